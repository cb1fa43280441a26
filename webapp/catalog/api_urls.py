from django.urls import path

from webapp.catalog import api

urlpatterns = [
    path("models/", api.ModelList.as_view(), name="api-model-list"),
    path("models/<str:pk>/", api.ModelDetail.as_view(), name="api-model-detail"),
]
