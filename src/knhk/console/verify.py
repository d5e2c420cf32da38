"""``/verify``: check any proof bundle in the browser (pasted or loaded from a file), with nothing trusted to the
server. The checks themselves are ``static/verify.js`` (WebCrypto: SHA-256 and Ed25519), the same as
:func:`knhk.proof.bundle.verify_bundle`: canonical payload → id, Ed25519 signature, C2SP signed-note checkpoint,
RFC 9162 inclusion proof to the checkpoint's root."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from knhk.console.face import render, session_of

router = APIRouter()


@router.get("/verify")
def verify_page(request: Request) -> Response:
    session_of(request)
    return render(request, "verify.html", title="Verify a proof bundle")
