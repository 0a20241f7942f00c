"""A tiny WSGI app for trying stack: standard library only, so it installs with no package index."""
import json
import os
import socket


def release():
    """The release this process runs: stack writes its manifest into every release."""
    try:
        with open(".stack-release.json") as f:
            return json.load(f)["id"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = {
            "status": "ok",
            "release": release(),
            "pid": os.getpid(),
        }
        payload = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]
    if path == "/":
        scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ.get("wsgi.url_scheme", "http"))
        greeting = os.environ.get("GREETING", "Hello")
        payload = (
            f"<!doctype html><title>hello</title><link rel=stylesheet href=/static/style.css>"
            f"<h1>{greeting} from {socket.gethostname()}</h1><p>served over {scheme}</p>"
        ).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(payload)))])
        return [payload]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
