"""The SMART on FHIR app (Flask blueprint): launch, callback, tokens, session, and the app's pages."""

from smart_launch.blueprint import create_blueprint
from smart_launch.session import SmartSession, current_session, fhir_client_for, login_required

__all__ = ["SmartSession", "create_blueprint", "current_session", "fhir_client_for", "login_required"]
