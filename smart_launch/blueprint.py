"""The SMART app's blueprint ("smart", under /smart): the launch routes, B's pages, CSRF checks,
security headers, and one place that turns errors into pages."""

from __future__ import annotations

import html
import logging

from flask import Blueprint, Response, jsonify, request

from plugin.config import Settings
from smart_launch import launch, security
from smart_launch.errors import SmartError

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


def error_response(exc: SmartError) -> Response | tuple[Response, int]:
    """An HTML page (or JSON for fetch calls) that says what went wrong, never with secrets."""
    log.info("SMART request refused (%s): %s", exc.status, type(exc).__name__)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(error=str(exc)), exc.status
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>chartlight</title></head>"
            f"<body><h1>chartlight</h1><p>{html.escape(str(exc))}</p></body></html>")
    return Response(page, status=exc.status, content_type="text/html; charset=utf-8")
