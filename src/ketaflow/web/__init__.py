"""Server-rendered pages (Jinja2) and their static files. The pages call the capabilities'
services directly, never the API over HTTP."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

# select_autoescape (Starlette's default) escapes every .html template.
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
