from django.urls import path

from jobs import api

urlpatterns = [
    path("jobs/", api.JobList.as_view(), name="api-job-list"),
    path("jobs/<str:pk>/", api.JobDetail.as_view(), name="api-job-detail"),
    path("jobs/<str:pk>/events/", api.JobEvents.as_view(), name="api-job-events"),
    path("jobs/<str:pk>/cancel/", api.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<str:pk>/retry/", api.JobRetry.as_view(), name="api-job-retry"),
    path("models/<str:pk>/merge/", api.ModelMerge.as_view(), name="api-model-merge"),
    path("models/<str:pk>/export/", api.ModelExport.as_view(), name="api-model-export"),
]
