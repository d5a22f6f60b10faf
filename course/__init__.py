"""The SFT course package: embedded model and data, loading, evaluation, grading and plots."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
REPO_ROOT = PACKAGE_DIR.parent
