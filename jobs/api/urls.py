from django.urls import path

from jobs.api import batches, uploads, views, webhooks

urlpatterns = [
    path("watermark/embed", views.WatermarkEmbedView.as_view(), name="watermark-embed"),
    path("watermark/detect", views.WatermarkDetectView.as_view(), name="watermark-detect"),
    path("watermark/report", views.WatermarkReportView.as_view(), name="watermark-report"),
    path("watermark/report/attacks", views.WatermarkAttacksView.as_view(), name="watermark-attacks"),
    path("emotion/analyze", views.EmotionAnalyzeView.as_view(), name="emotion-analyze"),
    path("beatsync/align", views.BeatsyncAlignView.as_view(), name="beatsync-align"),
    path("jobs", views.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:pk>", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/output", views.JobOutputView.as_view(), name="job-output"),
    path("jobs/<uuid:pk>/input", views.JobInputView.as_view(), name="job-input"),
    path("jobs/<uuid:pk>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:pk>/deliveries", views.JobDeliveriesView.as_view(), name="job-deliveries"),
    path("batches", batches.BatchCollectionView.as_view(), name="batch-list"),
    path("batches/<uuid:pk>", batches.BatchDetailView.as_view(), name="batch-detail"),
    path("batches/<uuid:pk>/cancel", batches.BatchCancelView.as_view(), name="batch-cancel"),
    path("uploads", uploads.UploadCreateView.as_view(), name="upload-create"),
    path("webhooks/endpoint", webhooks.WebhookEndpointView.as_view(), name="webhook-endpoint"),
    path("webhooks/endpoint/rotate-secret", webhooks.WebhookSecretRotateView.as_view(), name="webhook-rotate"),
    path("webhooks/endpoint/test", webhooks.WebhookTestEventView.as_view(), name="webhook-test"),
    path("webhooks/deliveries", webhooks.WebhookDeliveryListView.as_view(), name="webhook-delivery-list"),
    path("webhooks/deliveries/<uuid:pk>", webhooks.WebhookDeliveryDetailView.as_view(), name="webhook-delivery"),
    path(
        "webhooks/deliveries/<uuid:pk>/resend", webhooks.WebhookDeliveryResendView.as_view(),
        name="webhook-delivery-resend",
    ),
]
