"""`make up` seeds the base-model catalog: all-MiniLM-L6-v2 (classification) and
SmolLM2-135M-Instruct (chat), converting the latter from GGUF once (~20 s)."""
from django.core.management.base import BaseCommand

from catalog.seeding import seed_base_models


class Command(BaseCommand):
    help = "Seed the base-model catalog (idempotent); converts the chat model to safetensors the first time."

    def handle(self, *args, **options):
        seed_base_models(log=self.stdout.write)
        self.stdout.write(self.style.SUCCESS("Base-model catalog is seeded."))
