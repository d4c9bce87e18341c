"""`make up` seeds an operator account and a demo organization (idempotent).

The operator's password is generated once and kept in var/operator-credentials
(mode 0600), so every run can print it without ever resetting it.
"""
import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from tenancy.models import Membership, Organization, Role

OPERATOR_EMAIL = "operator@lathe.local"
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the operator account and a demo organization if missing; print the credentials."

    def handle(self, *args, **options):
        credentials_file = settings.VAR_DIR / "operator-credentials"
        with transaction.atomic():
            operator = User.objects.filter(email=OPERATOR_EMAIL).first()
            if operator is None or not credentials_file.exists():
                password = secrets.token_urlsafe(12)
                if operator is None:
                    operator = User.objects.create_superuser(email=OPERATOR_EMAIL, password=password, full_name="Lathe Operator")
                else:
                    operator.set_password(password)
                    operator.save(update_fields=["password"])
                credentials_file.write_text(f"{OPERATOR_EMAIL}\n{password}\n")
                os.chmod(credentials_file, 0o600)
            email, password = credentials_file.read_text().split()[:2]

            organization, _ = Organization.objects.get_or_create(slug=DEMO_SLUG, defaults={"name": "Demo"})
            Membership.objects.get_or_create(organization=organization, user=operator, defaults={"role": Role.OWNER})

        self.stdout.write(self.style.SUCCESS("Lathe is seeded."))
        self.stdout.write(f"  Operator (dashboard + /admin/): {email} / {password}")
        self.stdout.write(f"  Demo organization: /o/{organization.slug}/")
