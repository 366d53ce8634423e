from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # API key scopes name job kinds; accounts (below jobs) learns them here instead of importing jobs.
        from accounts import services
        from jobs.models import JobKind

        services.register_job_kinds(JobKind.choices)
