from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Imported here, not at the top: app modules that touch models may only load once the registry is ready.
        from accounts.signals import tenant_created
        from billing.receivers import give_new_tenant_a_subscription

        tenant_created.connect(give_new_tenant_a_subscription, dispatch_uid="billing.tenant_created")
