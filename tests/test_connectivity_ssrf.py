"""The SSRF guard and the guarded client: where the probe may and may not go.

The resolver is stubbed (no real DNS); the slow, endless and redirecting
servers are tiny local ones. No request ever leaves the loopback interface: a
refused address is refused before any connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from integrations.connectivity import client, probe, ssrf
from integrations.models import CheckOutcome


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A fake DNS: name -> addresses. A name not in it does not resolve."""
    answers: dict[str, list[str]] = {}
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in answers:
            raise OSError("Name or service not known")
        return answers[host]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    answers["__asked__"] = asked  # type: ignore[assignment]
    return answers


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if the client tries to connect anywhere."""
    attempts: list[str] = []

    def send(method: str, url: str, *args: object, **kwargs: object) -> None:
        attempts.append(url)
        raise AssertionError(f"the client connected to {url}")

    monkeypatch.setattr(client, "send", send)
    return attempts


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(3)  # longer than the test's deadline
            self.send_response(200)
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(40):  # one byte each 0.1 s: never idle, never done
                try:
                    self.wfile.write(b"[")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.end_headers()
            chunk = b"[" * 65536
            for _ in range(1024):  # stops by itself after 64 MiB
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.end_headers()
            self.wfile.write(b"[]")

    do_OPTIONS = do_GET


@pytest.fixture
def tiny_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TestTheGuardRefusesInternalAddresses:
    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("http://127.0.0.1/dicom-web", "a loopback address"),
            ("http://127.1.2.3:8042/dicom-web", "a loopback address"),
            ("http://[::1]:8042/dicom-web", "a loopback address"),
            ("http://[::ffff:127.0.0.1]/dicom-web", "a loopback address"),
            ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
            ("http://[fd00:ec2::254]/", "a cloud metadata address"),
            ("http://10.1.2.3/dicom-web", "a private address"),
            ("https://192.168.0.10/dicom-web", "a private address"),
            ("http://172.16.5.5/dicom-web", "a private address"),
            ("http://[fd12:3456::1]/dicom-web", "a private address"),
            ("http://169.254.10.10/", "a link-local address"),
            ("http://[fe80::1]/", "a link-local address"),
            ("http://0.0.0.0:8042/", "an unspecified address"),
            ("http://224.0.0.1/", "a multicast address"),
            ("http://240.0.0.1/", "a reserved address"),
            ("http://100.64.0.1/", "a reserved address"),
        ],
    )
    def test_it_refuses_the_address_and_says_why(self, url: str, reason: str) -> None:
        with pytest.raises(ssrf.Blocked, match=reason):
            ssrf.check_url(url, allow_private=False)

    def test_it_refuses_a_name_resolving_to_a_private_address(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["pacs.hospital.example"] = ["10.20.30.40"]
        with pytest.raises(ssrf.Blocked, match=r"pacs\.hospital\.example \(10\."):
            ssrf.check_url(
                "https://pacs.hospital.example/dicomweb", allow_private=False
            )

    def test_it_refuses_a_name_when_any_one_of_its_addresses_is_internal(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["mixed.example"] = ["93.184.215.14", "2606:2800:21f::1", "::1"]
        with pytest.raises(ssrf.Blocked, match="loopback"):
            ssrf.check_url("https://mixed.example/dicomweb", allow_private=False)

    def test_it_accepts_a_name_whose_addresses_are_all_public(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["pacs.example.org"] = ["93.184.215.14", "2606:2800:21f::1"]
        target = ssrf.check_url("https://pacs.example.org:8443/dicomweb")
        assert target.host == "pacs.example.org"
        assert target.port == 8443
        assert target.addresses == ("93.184.215.14", "2606:2800:21f::1")

    @pytest.mark.parametrize(
        "url", ["ftp://pacs.example.org/", "file:///etc/passwd", "gopher://x/"]
    )
    def test_it_refuses_schemes_other_than_http_and_https(self, url: str) -> None:
        with pytest.raises(ssrf.Blocked, match="not an http or https URL"):
            ssrf.check_url(url)

    def test_private_addresses_pass_when_the_deployment_allows_them(self) -> None:
        with override_settings(CONNECTIVITY_ALLOW_PRIVATE=True):
            assert ssrf.check_url("http://10.1.2.3/x").addresses == ("10.1.2.3",)
            assert ssrf.check_url("http://[::1]:8042/x").addresses == ("::1",)

    def test_cloud_metadata_stays_refused_even_when_private_addresses_are_allowed(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["metadata.google.internal"] = ["169.254.169.254"]
        with (
            override_settings(CONNECTIVITY_ALLOW_PRIVATE=True),
            pytest.raises(ssrf.Blocked, match="metadata"),
        ):
            ssrf.check_url("http://metadata.google.internal/computeMetadata/v1/")


# (address, refused without CONNECTIVITY_ALLOW_PRIVATE, refused with it): the
# text each refusal must contain, or None for "allowed".
EMBEDDED_AND_LINK_LOCAL = [
    # NAT64 (RFC 6052 well-known prefix): the last 32 bits.
    ("64:ff9b::a9fe:a9fe", "metadata address (169.254.169.254)", "metadata"),
    ("64:ff9b::7f00:1", "loopback address (127.0.0.1)", None),
    ("64:ff9b::a01:203", "private address (10.1.2.3)", None),
    ("64:ff9b::5db8:d70e", None, None),  # 93.184.215.14
    # NAT64 local-use prefix: every RFC 6052 position is judged.
    ("64:ff9b:1:a9fe:a9:fe00::", "metadata address (169.254.169.254)", "metadata"),
    ("64:ff9b:1::1", "unspecified address (0.0.0.0)", "unspecified"),
    # 6to4: bits 16-47.
    ("2002:a9fe:a9fe::1", "metadata address (169.254.169.254)", "metadata"),
    ("2002:a00:1::1", "private address (10.0.0.1)", None),
    ("2002:5db8:d70e::1", None, None),
    # IPv4-compatible, IPv4-mapped, SIIT.
    ("::169.254.169.254", "metadata address (169.254.169.254)", "metadata"),
    ("::127.0.0.1", "loopback address (127.0.0.1)", None),
    ("::ffff:169.254.170.2", "metadata address (169.254.170.2)", "metadata"),
    ("::ffff:127.0.0.1", "loopback address (127.0.0.1)", None),
    ("::ffff:0:169.254.169.254", "metadata address (169.254.169.254)", "metadata"),
    ("::ffff:0:10.0.0.1", "private address (10.0.0.1)", None),
    # Teredo: server in bits 32-63, client in the last 32 bits inverted.
    ("2001:0:a9fe:a9fe::5db8:d70e", "metadata address (169.254.169.254)", "metadata"),
    ("2001:0:5db8:d70e::5601:56fe", "link-local address (169.254.169.1)", "link-local"),
    ("2001:0:5db8:d70e::80ff:fffe", "loopback address (127.0.0.1)", None),
    ("2001:0:5db8:d70e::a247:28f1", None, None),  # 93.184.215.14 both ends
    # Link-local and metadata: refused whatever the setting says.
    ("169.254.169.254", "metadata", "metadata"),
    ("169.254.170.2", "metadata", "metadata"),
    ("169.254.170.23", "metadata", "metadata"),
    ("169.254.1.1", "link-local", "link-local"),
    ("fd00:ec2::254", "metadata", "metadata"),
    ("fd00:ec2::23", "metadata", "metadata"),
    ("fe80::1", "link-local", "link-local"),
    ("fec0::1", "site-local", "site-local"),
    # What ALLOW_PRIVATE is for.
    ("10.1.2.3", "private", None),
    ("fd12:3456::1", "private", None),
    ("::1", "loopback", None),
    ("2606:2800:21f::1", None, None),
]


class TestTheGuardJudgesIPv4InsideIPv6AndLinkLocal:
    @pytest.mark.parametrize(("address", "strict", "_"), EMBEDDED_AND_LINK_LOCAL)
    def test_without_allow_private(
        self, resolver: dict[str, list[str]], address: str, strict: str | None, _: str
    ) -> None:
        resolver["archive.example"] = [address]
        self._assert("http://archive.example/dicomweb", strict, allow_private=False)
        literal = f"[{address}]" if ":" in address else address
        self._assert(f"http://{literal}/dicomweb", strict, allow_private=False)

    @pytest.mark.parametrize(("address", "_", "lenient"), EMBEDDED_AND_LINK_LOCAL)
    def test_with_allow_private(
        self, resolver: dict[str, list[str]], address: str, _: str, lenient: str | None
    ) -> None:
        resolver["archive.example"] = [address]
        with override_settings(CONNECTIVITY_ALLOW_PRIVATE=True):
            self._assert("http://archive.example/dicomweb", lenient, allow_private=None)

    @staticmethod
    def _assert(url: str, refused: str | None, *, allow_private: bool | None) -> None:
        if refused is None:
            assert ssrf.check_url(url, allow_private=allow_private).addresses
        else:
            with pytest.raises(ssrf.Blocked) as caught:
                ssrf.check_url(url, allow_private=allow_private)
            assert refused in str(caught.value)

    def test_the_probe_blocks_a_nat64_disguised_metadata_address(
        self, resolver: dict[str, list[str]], no_connections: list[str]
    ) -> None:
        resolver["sneaky.example"] = ["64:ff9b::a9fe:a9fe"]
        with override_settings(CONNECTIVITY_ALLOW_PRIVATE=True):
            result = probe.probe(
                "http://sneaky.example/dicomweb",
                "http://sneaky.example/dicomweb",
                "https://pacsbin.com",
            )
        assert result.outcome == CheckOutcome.BLOCKED
        assert no_connections == []


class TestTheProbeReportsARefusalAsBlocked:
    def test_a_loopback_archive_is_blocked_without_any_connection(
        self, no_connections: list[str]
    ) -> None:
        result = probe.probe(
            "http://127.0.0.1:8042/dicom-web",
            "http://127.0.0.1:8042/dicom-web",
            "https://pacsbin.com",
        )
        assert result.outcome == CheckOutcome.BLOCKED
        assert [f.code for f in result.findings] == ["blocked"]
        assert "loopback" in result.findings[0].message
        assert "CONNECTIVITY_ALLOW_PRIVATE" in result.findings[0].message
        assert no_connections == []

    def test_a_name_that_does_not_resolve_is_unreachable(
        self, resolver: dict[str, list[str]], no_connections: list[str]
    ) -> None:
        result = probe.probe(
            "https://nowhere.example/dicomweb",
            "https://nowhere.example/dicomweb",
            "https://pacsbin.com",
        )
        assert result.outcome == CheckOutcome.UNREACHABLE
        assert result.findings[0].code == "unreachable_dns"
        assert "nowhere.example" in result.findings[0].message


def redirecting_send(
    sent: list[str], location: str, then: Callable[[], None] = lambda: None
) -> Callable[..., client.Response]:
    """A stand-in for client.send: the first request is redirected to
    ``location`` (then ``then`` runs), any later one answers 200."""

    def send(method, url, target, headers, limits):  # type: ignore[no-untyped-def]
        sent.append(url)
        if len(sent) > 1:
            return client.Response(
                url=url, status=200, headers=client.urllib3.HTTPHeaderDict(), body=b""
            )
        then()
        return client.Response(
            url=url,
            status=302,
            headers=client.urllib3.HTTPHeaderDict({"Location": location}),
            body=b"",
        )

    return send


class TestRedirectsAreCheckedHopByHop:
    @pytest.mark.usefixtures("allow_private")
    def test_a_redirect_to_the_metadata_service_is_never_followed(
        self, tiny_server: str
    ) -> None:
        url = f"{tiny_server}/redirect?to=http://169.254.169.254/latest/meta-data/"
        with pytest.raises(client.FetchError) as caught:
            client.fetch("GET", url, follow_redirects=True)
        assert caught.value.kind == "redirect_off_origin"
        assert "169.254.169.254" in caught.value.message

    def test_a_same_origin_hop_that_now_resolves_to_a_private_address_is_refused(
        self, resolver: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # DNS rebinding: the name is public for the first hop and private for
        # the redirect to its own origin; the guard checks every hop.
        resolver["pacs.example.org"] = ["93.184.215.14"]
        sent: list[str] = []

        def rebind() -> None:
            resolver["pacs.example.org"] = ["10.0.0.5"]

        monkeypatch.setattr(
            client,
            "send",
            redirecting_send(sent, "/dicomweb/studies?limit=1", then=rebind),
        )
        with pytest.raises(client.FetchError) as caught:
            client.fetch(
                "GET", "https://pacs.example.org/dicomweb", follow_redirects=True
            )
        assert caught.value.kind == "blocked"
        assert "private address" in caught.value.message
        assert sent == ["https://pacs.example.org/dicomweb"]


class TestRedirectsStayOnTheArchivesOrigin:
    """Issue 17, item 7: a redirect may point anywhere; what the registry
    sends (a search, a study's UIDs) was meant for the archive only."""

    @pytest.mark.parametrize(
        "location",
        [
            "https://collector.example.net/dicomweb/studies?limit=1",
            "http://pacs.example.org/dicomweb/studies",  # another scheme
            "https://pacs.example.org:8443/dicomweb/studies",  # another port
            "//collector.example.net/x",  # scheme-relative
        ],
    )
    def test_a_redirect_off_the_origin_is_an_error_and_never_sent(
        self,
        location: str,
        resolver: dict[str, list[str]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        resolver["pacs.example.org"] = ["93.184.215.14"]
        resolver["collector.example.net"] = ["93.184.215.15"]
        sent: list[str] = []
        monkeypatch.setattr(client, "send", redirecting_send(sent, location))
        with pytest.raises(client.FetchError) as caught:
            client.fetch(
                "GET",
                "https://pacs.example.org/dicomweb/studies?limit=1",
                follow_redirects=True,
            )
        assert caught.value.kind == "redirect_off_origin"
        assert "another origin" in caught.value.message
        assert sent == ["https://pacs.example.org/dicomweb/studies?limit=1"]
        assert "collector.example.net" not in resolver["__asked__"]

    @pytest.mark.parametrize(
        "location",
        [
            "/dicom-web/studies?limit=1",
            "https://PACS.example.org:443/dicom-web/studies?limit=1",
        ],
    )
    def test_a_redirect_within_the_origin_is_followed(
        self,
        location: str,
        resolver: dict[str, list[str]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        resolver["pacs.example.org"] = ["93.184.215.14"]
        sent: list[str] = []
        monkeypatch.setattr(client, "send", redirecting_send(sent, location))
        response = client.fetch(
            "GET", "https://pacs.example.org/dicomweb/studies", follow_redirects=True
        )
        assert response.status == 200
        assert len(sent) == 2
        assert response.redirects == [sent[1]]

    def test_the_probe_reports_it_and_goes_no_further(
        self, resolver: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        resolver["pacs.example.org"] = ["93.184.215.14"]
        sent: list[tuple[str, str]] = []

        def send(method, url, target, headers, limits):  # type: ignore[no-untyped-def]
            sent.append((method, url))
            status = 200 if method == "OPTIONS" else 302
            return client.Response(
                url=url,
                status=status,
                headers=client.urllib3.HTTPHeaderDict(
                    {"Location": "https://collector.example.net/studies"}
                ),
                body=b"",
            )

        monkeypatch.setattr(client, "send", send)
        result = probe.probe(
            "https://pacs.example.org/dicomweb",
            "https://pacs.example.org/dicomweb",
            "https://pacsbin.com",
        )
        assert result.outcome == CheckOutcome.PREFLIGHT_FAILED
        [finding] = [f for f in result.findings if f.code.startswith("qido_redirect")]
        assert finding.code == "qido_redirect_off_origin"
        assert "collector.example.net" in finding.message
        assert "register it as the QIDO URL" in finding.message
        assert all("collector" not in url for _, url in sent)
        assert "collector.example.net" not in resolver["__asked__"]

    @pytest.mark.usefixtures("allow_private")
    def test_without_following_a_redirect_is_returned_as_is(
        self, tiny_server: str
    ) -> None:
        url = f"{tiny_server}/redirect?to=http://169.254.169.254/"
        response = client.fetch("GET", url)
        assert response.status == 302


@pytest.mark.usefixtures("allow_private")
class TestLimits:
    def test_a_server_that_never_answers_hits_the_timeout(
        self, tiny_server: str
    ) -> None:
        started = time.monotonic()
        with pytest.raises(client.FetchError) as caught:
            client.fetch(
                "GET", f"{tiny_server}/slow", limits=client.Limits(total_timeout=0.5)
            )
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 2

    def test_a_server_that_drips_forever_hits_the_total_deadline(
        self, tiny_server: str
    ) -> None:
        started = time.monotonic()
        with pytest.raises(client.FetchError) as caught:
            client.fetch(
                "GET", f"{tiny_server}/drip", limits=client.Limits(total_timeout=0.7)
            )
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 2

    def test_an_endless_body_hits_the_byte_cap(self, tiny_server: str) -> None:
        with pytest.raises(client.FetchError) as caught:
            client.fetch(
                "GET",
                f"{tiny_server}/endless",
                limits=client.Limits(max_bytes=256 * 1024),
            )
        assert caught.value.kind == "too_large"
        assert "256 KiB" in caught.value.message

    def test_the_probe_reports_a_timeout_as_unreachable(self, tiny_server: str) -> None:
        result = probe.probe(
            f"{tiny_server}/slow-archive",
            f"{tiny_server}/slow-archive",
            "https://pacsbin.com",
            fetch=lambda **kw: client.fetch(**{**kw, "url": f"{tiny_server}/slow"}),
            limits=client.Limits(total_timeout=0.3),
        )
        assert result.outcome == CheckOutcome.UNREACHABLE
        assert result.findings[0].code == "unreachable_timeout"

    def test_a_refused_connection_is_unreachable(self) -> None:
        result = probe.probe(
            "http://127.0.0.1:9/dicom-web",
            "http://127.0.0.1:9/dicom-web",
            "https://a.b",
        )
        assert result.outcome == CheckOutcome.UNREACHABLE
        assert result.findings[0].code == "unreachable_refused"
