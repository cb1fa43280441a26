from django.urls import path

from webapp.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("import/", views.import_model, name="import"),
    path("<uuid:pk>/", views.model_detail, name="detail"),
    path("<uuid:pk>/rename/", views.rename, name="rename"),
    path("<uuid:pk>/delete/", views.delete, name="delete"),
    path("<uuid:pk>/download/", views.download_zip, name="download"),
    path("<uuid:pk>/files/<path:name>", views.download_file, name="file"),
    path("<uuid:pk>/profile/", views.profile, name="profile"),
    path("<uuid:pk>/gguf/<str:output_type>/", views.download_gguf, name="gguf"),
    path("<uuid:pk>/gguf/<str:output_type>/Modelfile", views.download_gguf, {"name": "Modelfile"}, name="gguf-modelfile"),
    path("<uuid:pk>/deployment/", views.deployment_partial, name="deployment"),
]
