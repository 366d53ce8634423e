"""The dashboard's Verify page: upload a file, see whether its Content Credentials validate and, when they do
not, what its watermark and the tenant's registry say (``jobs.attribution`` does the work, as for the API).

A watermark answer needs a detection job; its result page polls itself with htmx until the job is final.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from core.errors import ServiceError
from jobs import attribution, services
from jobs.models import FINAL_STATUSES, Job, JobKind


class VerifyForm(forms.Form):
    file = forms.FileField(label="Audio file", help_text="WAV, FLAC, OGG, MP3 or M4A: a file you found or received.")


class VerifyPageView(DashboardMixin, TemplateView):
    template_name = "dashboard/verify.html"
    nav = "verify"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", VerifyForm())
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = VerifyForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        sub = services.Submission(
            tenant=self.tenant, kind=JobKind.WATERMARK_DETECT, files={"file": form.cleaned_data["file"]},
            user=request.user,
        )
        try:
            manifest = attribution.manifest_report(sub)
            if not manifest["valid"]:
                job = attribution.submit_detection(sub, manifest)
                return redirect("dashboard:provenance-verification", pk=job.pk)
        except ServiceError as exc:
            form.add_error("file", exc.message)
            return self.render_to_response(self.get_context_data(form=form), status=400)
        answer = attribution.verification_json(self.tenant.pk, manifest, None)
        return self.render_to_response(self.get_context_data(answer=answer))


class VerificationPageView(DashboardMixin, TemplateView):
    """One verification answered by the watermark (its detect job); ``?fragment=1`` is the htmx poll."""

    template_name = "dashboard/verify.html"
    nav = "verify"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        job = Job.objects.filter(
            pk=kwargs["pk"], tenant=self.tenant, kind=JobKind.WATERMARK_DETECT,
            params__has_key=attribution.VERIFY_PARAM,
        ).first()
        if job is None:
            raise Http404("No such verification.")
        context.update(
            form=VerifyForm(), answer=attribution.verification_for_job(job, self.request), job=job,
            polling=job.status not in FINAL_STATUSES,
        )
        return context

    def get_template_names(self) -> list[str]:
        if self.request.GET.get("fragment"):
            return ["dashboard/verify_answer.html"]
        return [self.template_name]


# Mounted in the ``dashboard`` namespace (audioseal_site/urls.py).
urlpatterns = [
    path("provenance/verify/", VerifyPageView.as_view(), name="provenance-verify"),
    path("provenance/verify/<uuid:pk>/", VerificationPageView.as_view(), name="provenance-verification"),
]
