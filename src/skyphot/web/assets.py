"""Files the pages need, from installed packages (nothing is loaded from a CDN)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from skyphot.errors import ToolNotFoundError

WEB_DIR = Path(__file__).resolve().parent


def _package_dir(module: str, advice: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ToolNotFoundError(f"the {module} package is not installed: {advice}")
    return Path(spec.origin).resolve().parent


def plotly_js() -> Path:
    """``plotly.min.js`` as shipped in the installed ``plotly`` package."""
    return _package_dir("plotly", "pip install 'plotly>=5.20'") / "package_data" / "plotly.min.js"


def docs_assets() -> Path:
    """Directory with Swagger UI and ReDoc (``swagger-ui-bundle.js``, ``swagger-ui.css``,
    ``redoc.standalone.js``) as shipped by the ``fastapi-offline`` package (MIT/Apache)."""
    return _package_dir("fastapi_offline", "pip install 'fastapi-offline>=1.7'") / "static"
