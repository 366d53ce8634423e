"""``manage.py create_tenant "Acme"``: a tenant, optionally its owner, and an API key printed once."""

from django.core.management.base import BaseCommand

from accounts import services
from accounts.models import Tenant


class Command(BaseCommand):
    help = "Create a tenant (or reuse one by slug) and issue an API key for it. The key is printed once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug")
        parser.add_argument("--owner", help="username of the owner (created if missing)")
        parser.add_argument("--key-name", default="default")
        parser.add_argument("--quiet-key", action="store_true", help="print only the key")

    def handle(self, *args, **options) -> None:
        tenant = Tenant.objects.filter(slug=options["slug"]).first() if options["slug"] else None
        if tenant is None:
            owner = services.get_or_create_user(options["owner"]) if options["owner"] else None
            tenant = services.create_tenant(options["name"], owner=owner, slug=options["slug"])
        issued = services.issue_api_key(tenant, options["key_name"])
        if options["quiet_key"]:
            self.stdout.write(issued.secret)
        else:
            self.stdout.write(f"tenant: {tenant.name} ({tenant.slug}, {tenant.id})")
            self.stdout.write(f"api key (shown once): {issued.secret}")
