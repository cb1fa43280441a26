from django.urls import path

from jobs import views

app_name = "workers"
urlpatterns = [path("", views.worker_list, name="list")]
