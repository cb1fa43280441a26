from django.urls import path

from webapp.catalog import api

urlpatterns = [
    path("models/", api.ModelList.as_view(), name="api-model-list"),
    path("models/import/", api.ModelImport.as_view(), name="api-model-import"),
    path("models/<str:pk>/", api.ModelDetail.as_view(), name="api-model-detail"),
    path("models/<str:pk>/download/", api.ModelDownload.as_view(), name="api-model-download"),
    path("models/<str:pk>/files/<path:name>", api.ModelFileDownload.as_view(), name="api-model-file"),
    path("models/<str:pk>/profile/", api.ModelProfile.as_view(), name="api-model-profile"),
    path("models/<str:pk>/gguf/<str:output_type>/", api.ModelGgufDownload.as_view(), name="api-model-gguf"),
    path("models/<str:pk>/gguf/<str:output_type>/Modelfile", api.ModelGgufDownload.as_view(), {"name": "Modelfile"},
         name="api-model-gguf-modelfile"),
]
