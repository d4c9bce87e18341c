from django.core.management.base import BaseCommand, CommandError

from billing import gateway, services
from billing.models import Plan


class Command(BaseCommand):
    help = "Create or update each paid plan's Stripe product, base price, meter and metered price (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="plans to sync (default: every active paid plan)")

    def handle(self, *args, slugs, **options):
        if not gateway.enabled():
            raise CommandError("STRIPE_SECRET_KEY is not set: billing is off.")
        plans = Plan.objects.filter(slug__in=slugs) if slugs else Plan.objects.filter(is_active=True).exclude(kind="free")
        for plan in plans:
            result = services.plan_sync(plan=plan)
            self.stdout.write(f"{plan.slug}: product {result['product']}, base {result['base_price']}, "
                              f"meter {result['meter']} ({result['event_name']}), metered {result['metered_price']}")
