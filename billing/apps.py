from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The one hook other apps reach billing through for limits (tenancy.entitlements).
        from tenancy.entitlements import register_provider

        from .services import entitlements_of

        register_provider(entitlements_of)
