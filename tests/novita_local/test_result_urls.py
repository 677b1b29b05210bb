"""Result URLs behave like presigned bucket URLs: valid for image_url_ttl, unforgeable, no paths."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from novita_local.server import LocalServer
from novita_local.signing import UrlSigner
from tests.novita_local.helpers import (
    StartServer,
    http,
    raw_request,
    submit,
    valid_body,
    wait_done,
)


@pytest.fixture
def image_url(client: httpx.Client) -> str:
    url: str = wait_done(client, submit(client, valid_body(image_num=2)))["images"][0]["image_url"]
    return url


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path, query["expires"][0], query["signature"][0]


def _assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert f"<Code>{code}</Code>" in response.text


def test_valid_url_downloads_without_api_key(start_server: StartServer) -> None:
    server = start_server(api_key="sk-files-need-no-key")
    headers = {"Authorization": "Bearer sk-files-need-no-key"}
    with http(server, headers=headers) as client:
        url = wait_done(client, submit(client))["images"][0]["image_url"]
    response = httpx.get(url)  # like a bucket: the signature is the credential
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")


def test_url_expires_after_ttl(start_server: StartServer) -> None:
    # Long enough that a busy machine still fetches it in time; the wait below adapts.
    server = start_server(image_url_ttl=5)
    with http(server) as client:
        result = wait_done(client, submit(client))
        image = result["images"][0]
        assert 0 <= image["image_url_ttl"] <= 5
        assert client.get(image["image_url"]).status_code == 200
        expires = int(_parts(image["image_url"])[1])
        time.sleep(max(0.0, expires + 1.05 - time.time()))
        response = client.get(image["image_url"])
        _assert_refused(response, 403, "AccessDenied")
        assert "Request has expired" in response.text
        # polling again does not renew the URL: it is the same, with no time left
        again = client.get("/v3/async/task-result", params={"task_id": result["task"]["task_id"]})
        assert again.json()["images"][0]["image_url"] == image["image_url"]
        assert again.json()["images"][0]["image_url_ttl"] == 0
        assert server.stats()["downloads"]["refused"]["expired"] == 1


def test_tampered_urls_are_refused(client: httpx.Client, image_url: str) -> None:
    path, expires, signature = _parts(image_url)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other_index = path.replace("/0.png", "/1.png")
    tampered = {
        "signature": f"{path}?expires={expires}&signature={flipped}",
        "later-expiry": f"{path}?expires={int(expires) + 3600}&signature={signature}",
        "other-index": f"{other_index}?expires={expires}&signature={signature}",
        "other-extension": f"{path[:-4]}.jpeg?expires={expires}&signature={signature}",
        "non-ascii-signature": f"{path}?expires={expires}&signature=é{signature[1:]}",
        "non-numeric-expiry": f"{path}?expires=soon&signature={signature}",
    }
    for name, url in tampered.items():
        response = client.get(url)
        assert response.status_code == 403, name
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text, name
    _assert_refused(client.get(path), 403, "AccessDenied")
    _assert_refused(client.get(f"{path}?expires={expires}"), 403, "AccessDenied")


def test_a_url_signed_with_another_key_is_refused(client: httpx.Client, image_url: str) -> None:
    path, expires, _ = _parts(image_url)
    _, _, task_id, name = path.strip("/").split("/")
    forged = UrlSigner(b"guessed key").signature(task_id, name, int(expires))
    _assert_refused(
        client.get(f"{path}?expires={expires}&signature={forged}"), 403, "SignatureDoesNotMatch"
    )


def test_validly_signed_but_unknown_object_is_404(local_server: LocalServer) -> None:
    signer = local_server.state.signer
    url = signer.url(local_server.base_url, "no-such-task", 0, "png", int(time.time()) + 60)
    _assert_refused(httpx.get(url), 404, "NoSuchKey")


TRAVERSALS = [
    pytest.param(b"/_local/files/../../../../etc/passwd", id="dot-dot"),
    pytest.param(b"/_local/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd", id="encoded-dots"),
    pytest.param(
        b"/_local/files/x/..%2F..%2F..%2Fetc%2Fpasswd?expires=1&signature=0", id="enc-slash"
    ),
    pytest.param(
        b"/_local/files/..%5C..%5Cwindows%5Cwin.ini?expires=1&signature=0", id="backslash"
    ),
    pytest.param(b"/_local/files/%00/0.png?expires=1&signature=0", id="nul"),
    pytest.param(b"/_local/files//etc/passwd", id="absolute"),
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_never_reads_files(local_server: LocalServer, path: bytes) -> None:
    answer = raw_request(
        local_server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 403, 404)
    assert b"root:" not in answer and b"[fonts]" not in answer
