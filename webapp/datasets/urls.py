from django.urls import path

from webapp.datasets import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("upload/", views.dataset_upload, name="upload"),
    path("<uuid:pk>/", views.dataset_detail, name="detail"),
    path("<uuid:pk>/settings/", views.dataset_settings, name="settings"),
    path("<uuid:pk>/restore/", views.dataset_restore, name="restore"),
    path("<uuid:pk>/deduplicate/", views.dataset_deduplicate, name="deduplicate"),
    path("<uuid:pk>/delete/", views.dataset_delete, name="delete"),
]
