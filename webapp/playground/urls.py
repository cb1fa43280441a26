from django.urls import path

from webapp.playground import views

app_name = "playground"
urlpatterns = [
    path("", views.index, name="index"),
    path("runs/", views.create_run, name="create"),
    path("runs/<uuid:pk>/", views.run_page, name="run"),
    path("runs/<uuid:pk>/answers/", views.answers, name="answers"),
]
