from django.urls import path

from webapp.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("<uuid:pk>/", views.model_detail, name="detail"),
]
