import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[2]
for _path in (_root, _root / "platform"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.prod")
application = get_wsgi_application()
