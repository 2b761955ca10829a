"""A tiny upstream app in Python (standard library only).

Atrium starts it with `python3 app.py` and PORT set (app.json: "upstream" with port 0 lets the portal
pick a free port), proxies /apps/ea/hello-python/... to it with the prefix stripped, and tells it who
the user is in X-Atrium-* headers. X-Atrium-Assertion is a JWT signed by the portal (keys at
/.well-known/atrium/jwks.json) so an app that must not trust its network can verify the headers; a
production app would check it with a JOSE library before believing anything.
"""
import base64
import html
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


def identity(headers):
    profile = headers.get("X-Atrium-Profile", "")
    padded = profile + "=" * (-len(profile) % 4)
    # X-Atrium-User and -Email come exactly as they are unless X-Atrium-Encoded names them
    # ("user", "email", percent-encoded UTF-8): decode only those.
    encoded = {part.strip().lower() for part in headers.get("X-Atrium-Encoded", "").split(",")}

    def scalar(field):
        value = headers.get(f"X-Atrium-{field}", "")
        return unquote(value) if field.lower() in encoded else value

    return {
        "sub": scalar("User"),
        "email": scalar("Email"),
        # The name is always percent-encoded; group names never need it.
        "name": unquote(headers.get("X-Atrium-Name", "")),
        "level": headers.get("X-Atrium-Level", ""),
        "groups": [g for g in headers.get("X-Atrium-Groups", "").split(",") if g],
        "profile": json.loads(base64.urlsafe_b64decode(padded) or b"{}") if profile else {},
        "prefix": headers.get("X-Forwarded-Prefix", ""),
        "has_assertion": bool(headers.get("X-Atrium-Assertion")),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        who = identity(self.headers)
        if self.path.startswith("/api/whoami"):
            body = json.dumps({**who, "path": self.path}).encode()
            content_type = "application/json"
        else:
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
                for k, v in who.items()
            )
            # The portal's layout for app pages: phone-ready, its styles, and its bar (<atrium-bar>:
            # who you are, back to the launcher, sign out). These paths are the portal's on its own
            # origin and on an app origin alike.
            body = (
                "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                "<meta name='color-scheme' content='light dark'><title>Hello from Python</title>"
                "<link rel='icon' href='/.well-known/atrium/favicon.svg' type='image/svg+xml'>"
                "<link rel='stylesheet' href='/.well-known/atrium/app.css'>"
                "<script src='/.well-known/atrium/bar.js' defer></script></head>"
                "<body><atrium-bar></atrium-bar><main id='main'>"
                f"<h1>Hello, {html.escape(who['name'] or who['email'])}</h1>"
                "<p>This page comes from a Python process the portal started and proxies to.</p>"
                f"<div class='scroll' role='region' aria-label='What the portal told this app' tabindex='0'><table class='grid'>{rows}</table></div></main></body></html>"
            ).encode()
            content_type = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8501"))
    print(f"hello-python listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
