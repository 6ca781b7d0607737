"""The SMART app's blueprint ("smart", under /smart): the launch routes, B's pages, CSRF checks,
security headers, and one place that turns errors into pages."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, render_template, request

from plugin.config import Settings
from smart_launch import launch, security
from smart_launch.errors import NotLaunched, SmartError

log = logging.getLogger(__name__)


def create_blueprint(settings: Settings) -> Blueprint:
    blueprint = Blueprint("smart", __name__, url_prefix="/smart")
    blueprint.add_url_rule("/launch", view_func=launch.ehr_launch, methods=["GET"])
    blueprint.add_url_rule("/start", view_func=launch.standalone_launch, methods=["GET"])
    blueprint.add_url_rule("/callback", view_func=launch.callback, methods=["GET"])
    blueprint.add_url_rule("/jwks.json", view_func=launch.jwks, methods=["GET"])
    blueprint.add_url_rule("/logout", view_func=launch.logout, methods=["POST"])
    security.install(blueprint, settings)
    blueprint.register_error_handler(SmartError, error_response)
    from smart_launch.pages import register_pages  # the app's pages (another module's routes)

    register_pages(blueprint)
    return blueprint


def error_response(exc: SmartError) -> Response | tuple[Response, int] | tuple[str, int]:
    """A page in the app's layout (or JSON for fetch calls) that says what went wrong, what the
    EHR said (escaped by the template) and what to do next; never a secret."""
    log.info("SMART request refused (%s): %s: %s", exc.status, type(exc).__name__, exc)
    if request.accept_mimetypes.best == "application/json":
        body = jsonify(error=str(exc), ehr_error=exc.ehr_error or None,
                       ehr_description=exc.ehr_description or None, next_step=exc.next_step or None)
        return body, exc.status
    heading = ("chartlight is not open" if isinstance(exc, NotLaunched)
               else "The EHR refused chartlight" if exc.ehr_error else "chartlight could not start")
    message = str(exc)
    return render_template("app_error.html", heading=heading, message=message[:1].upper() + message[1:],
                           ehr_error=exc.ehr_error, ehr_description=exc.ehr_description,
                           next_step=exc.next_step), exc.status
