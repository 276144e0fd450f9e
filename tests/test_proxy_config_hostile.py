"""The second wall: whatever a stored URL or a name holds, a generated nginx,
Apache or Caddy configuration keeps its shape (same directives as for a plain
server, accepted by the real tools), or is refused with a message. And rows
stored before the URL rule: listed by a system check, their configurations
refused (409 in the API, a message on the admin and status pages)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.test import TestCase

from integrations.connectivity import proxyconfig
from integrations.models import DicomWebServer, Institution, OnboardingRequest
from integrations.onboarding.links import status_link
from tests import peers
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    make_institution,
    make_server,
    submitted_request,
)

PLAIN_URL = "http://127.0.0.1:8042/dicom-web"
PLAIN_NAME = "Main PACS"

# Names pass validation (they are free text): they reach the comments as-is.
HOSTILE_NAMES = [
    "Main\nPACS } server { listen 80; }",
    "Main\r\n    proxy_pass http://evil.example;",
    'Main "PACS" \\',
    "Main PACS \\",  # an Apache comment ending in a backslash continues
    "{http.request.header.x-p} {$HOME} ${HOME} $http_x_target",
    "a;b#c$d{e}f'g`h",
    "line\u2028sep\u0085nel\x0bvt\x0cff\x00nul\x1besc",
    "</VirtualHost>\n<VirtualHost *:80>",
]

# Paths breaking the rule, written around it (as rows from before the rule
# are): the writer percent-encodes them and the configuration holds.
HOSTILE_PATHS = [
    "/dicom-web$http_x_target",
    "/dicom;web",
    "/dicom;internal;}types{",
    "/dicom{web",
    '/dicom-web"retry=0',
    "/{http.request.header.x-p}",
    "/{$HOME}/${HOME}",
    "/a b\nproxy_pass http://evil.example;",
    "/a'b\\c",
    "/\u00e9/\u00fc\u2028",
    "/a%zz%",
    "/a`b|c^d<e>",
    "/dw\\",
]

# URLs no configuration can carry: the writer refuses them itself.
UNWRITABLE_URLS = [
    ("http://$http_x_target/dicom-web", "“$”"),
    ("http://127.0.0.1:8042/dw?a;internal;}types{", "query"),
    ("http://evil.example;/dw", "“;”"),
    ("http://a b/dw", "U+0020"),
    ("http://{http.request.host}/dw", "“{”"),
    ("http://user:pw@127.0.0.1:8042/dw", "user name or password"),
    ("http://127.0.0.1:8042/dw#x", "fragment"),
    ("http://127.0.0.1:99999/dw", "99999"),
    ("gopher://127.0.0.1/dw", "http:// or https://"),
]


def server_for(
    url: str = PLAIN_URL, name: str = PLAIN_NAME, institution: str = "University"
) -> DicomWebServer:
    """An unsaved server: validation never ran on it."""
    return DicomWebServer(
        pk=12,
        institution=Institution(name=institution),
        name=name,
        qido_url=url,
        wado_url=url,
        needs_credentials=True,
    )


@pytest.fixture(autouse=True)
def origins(settings) -> None:  # type: ignore[no-untyped-def]
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = "https://registry.example"


# --- The shape of a configuration ---------------------------------------------
# Each format's own tokenizer, far enough to list its directives: keyword,
# number of arguments, and the variables / placeholders the arguments use.
# Comments are dropped, argument values are not compared.

_VARIABLES = {
    "nginx": re.compile(r"\$\w+|\$\{"),
    "apache": re.compile(r"\$\{[^}]*\}|%\{[^}]*\}"),
    "caddy": re.compile(r"(?<!\\)\{[^}]*\}"),
}


def _quoted(text: str, start: int, escapable: str) -> tuple[str, int]:
    quote, i, value = text[start], start + 1, []
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            i += 1
        value.append(text[i])
        i += 1
    return "".join(value), i + 1


def nginx_directives(text: str) -> list[tuple[str, ...]]:
    """nginx's own grammar: ``;``, ``{`` and ``}`` end statements anywhere,
    ``#`` starts a comment at a token's start, quotes group."""
    statements: list[list[str]] = []
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
        elif ch in ";{}":
            statements.append([*tokens, ch] if ch != "}" else ["}"])
            tokens = []
            i += 1
        elif ch in "\"'":
            value, i = _quoted(text, i, ch + "\\")
            tokens.append(value)
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in ";{}":
                j += 2 if text[j] == "\\" else 1
            tokens.append(text[i:j])
            i = j
    assert not tokens, f"unterminated statement {tokens}"
    return [_signature(s[:-1] if s[-1] in ";{" else s, "nginx") for s in statements]


def apache_directives(text: str) -> list[tuple[str, ...]]:
    """Apache's: a line is a directive (a trailing backslash continues it,
    comment lines too), ``#`` lines are comments, quotes group."""
    lines = re.sub(r"\\\n", "", text).split("\n")
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(_signature(_words(line, '"\\'), "apache"))
    return out


def caddy_directives(text: str) -> list[tuple[str, ...]]:
    """The Caddyfile's: a line is a directive, ``#`` at a token's start
    comments out the rest of the line, quotes group, braces open and close
    blocks."""
    out = []
    for line in text.split("\n"):
        words = _words(line, '"', comment="#")
        if words:
            out.append(_signature(words, "caddy"))
    return out


def _words(line: str, escapable: str, comment: str = "") -> list[str]:
    words: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch.isspace():
            i += 1
        elif comment and ch == comment:
            break
        elif ch == '"':
            value, i = _quoted(line, i, escapable)
            words.append(value)
        else:
            j = i
            while j < len(line) and not line[j].isspace():
                j += 1
            words.append(line[i:j])
            i = j
    return words


def _signature(words: list[str], kind: str) -> tuple[str, ...]:
    keyword, args = words[0], words[1:]
    used = sorted(v for arg in args for v in _VARIABLES[kind].findall(arg))
    return (keyword, str(len(args)), *used)


DIRECTIVES = {
    "nginx": nginx_directives,
    "apache": apache_directives,
    "caddy": caddy_directives,
}


def printable(line: str) -> bool:
    return line.replace("\t", " ").isprintable()


def shape(config: str, kind: str) -> list[tuple[str, ...]]:
    return DIRECTIVES[kind](config)


class TestTheShapeReader:
    """The comparison below is only worth something if it sees injections."""

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    def test_it_sees_an_added_directive_and_an_added_argument(self, kind: str) -> None:
        plain = proxyconfig.render(server_for(), kind)
        injected = {
            "nginx": plain.replace(
                'proxy_pass "http://127.0.0.1:8042/dicom-web/";',
                "proxy_pass http://127.0.0.1:8042/dicom-web/a;internal;",
            ),
            "apache": plain.replace(
                '"http://127.0.0.1:8042/dicom-web/"',
                '"http://127.0.0.1:8042/dicom-web/" "retry=0"',
                1,
            ),
            "caddy": plain.replace(
                '"/dicom-web{uri}"', '"/dicom-web{http.request.header.x-p}{uri}"'
            ),
        }[kind]
        assert injected != plain
        assert shape(injected, kind) != shape(plain, kind)
        comment_escape = {
            "nginx": "\n# x\nlisten 80;",
            "apache": "\n# x\nListen 80",
            "caddy": "\n# x\nbind 0.0.0.0",
        }[kind]
        assert shape(plain + comment_escape, kind) != shape(plain, kind)

    def test_it_sees_an_apache_comment_swallowing_the_next_line(self) -> None:
        plain = proxyconfig.render(server_for(), "apache")
        swallowed = plain.replace(
            "\n    ProxyRequests Off", "\n# x \\\n    ProxyRequests Off"
        )
        assert shape(swallowed, "apache") != shape(plain, "apache")


# --- The writer holds ------------------------------------------------------------


class TestHostileNames:
    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    def test_a_hostile_name_changes_no_directive(self, kind: str, name: str) -> None:
        plain = proxyconfig.render(server_for(), kind)
        for server in (server_for(name=name), server_for(institution=name)):
            config = proxyconfig.render(server, kind)
            assert shape(config, kind) == shape(plain, kind)
            assert len(config.splitlines()) == len(plain.splitlines())
            assert all(printable(line) for line in config.splitlines())
            assert "{$" not in config  # Caddy reads those even in comments

    def test_the_name_is_still_shown_readably(self) -> None:
        config = proxyconfig.render(server_for(name="Main\nPACS"), "nginx")
        assert '# Fix-it nginx configuration for "Main<U+000A>PACS"' in config


class TestHostilePaths:
    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    @pytest.mark.parametrize("path", HOSTILE_PATHS)
    def test_the_writer_percent_encodes_a_hostile_path_and_keeps_the_shape(
        self, kind: str, path: str
    ) -> None:
        plain = proxyconfig.compose(server_for(), kind)
        config = proxyconfig.compose(server_for("http://127.0.0.1:8042" + path), kind)
        assert shape(config, kind) == shape(plain, kind)
        assert len(config.splitlines()) == len(plain.splitlines())
        assert all(printable(line) for line in config.splitlines())

    def test_the_upstream_is_the_percent_encoded_path_on_the_same_host(self) -> None:
        config = proxyconfig.compose(
            server_for("http://127.0.0.1:8042/dicom;web$x{y}"), "nginx"
        )
        assert 'proxy_pass "http://127.0.0.1:8042/dicom%3Bweb%24x%7By%7D/";' in config
        assert 'location "/dicom%3Bweb%24x%7By%7D/" {' in config

    @pytest.mark.parametrize("path", HOSTILE_PATHS)
    def test_the_registry_refuses_to_render_it_naming_the_field(
        self, path: str
    ) -> None:
        with pytest.raises(proxyconfig.ConfigRefused) as caught:
            proxyconfig.render(server_for("http://127.0.0.1:8042" + path), "nginx")
        message = str(caught.value)
        assert "QIDO URL" in message and "breaks the URL rule" in message
        assert message.isprintable()

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    @pytest.mark.parametrize(("url", "named"), UNWRITABLE_URLS)
    def test_the_writer_refuses_a_url_it_cannot_carry(
        self, kind: str, url: str, named: str
    ) -> None:
        for refuse in (proxyconfig.compose, proxyconfig.render):
            with pytest.raises(proxyconfig.ConfigRefused) as caught:
                refuse(server_for(url), kind)
            assert named in str(caught.value)
            assert "QIDO URL" in str(caught.value)


class TestTheEscapers:
    def test_nginx_strings_are_quoted_and_a_dollar_is_refused(self) -> None:
        assert proxyconfig.nginx_string("/a/b/") == '"/a/b/"'
        for bad in ("$host", 'a"b', "a;b", "a{b", "a\nb"):
            with pytest.raises(proxyconfig.ConfigRefused):
                proxyconfig.nginx_string(bad)

    def test_apache_strings_escape_quotes_and_backslashes(self) -> None:
        assert proxyconfig.apache_string('a"b\\') == '"a\\"b\\\\"'
        assert proxyconfig.apache_header_value("100%") == '"100%%"'

    def test_caddy_strings_are_quoted_and_refuse_what_they_cannot_carry(
        self,
    ) -> None:
        assert proxyconfig.caddy_string("/a/b/*") == '"/a/b/*"'
        for bad in ("{http.request.host}", 'a"b', "a\\", "a b"):
            with pytest.raises(proxyconfig.ConfigRefused):
                proxyconfig.caddy_string(bad)

    def test_comment_text_is_one_printable_line(self) -> None:
        text = proxyconfig.comment_text("a\nb\r\u2028{$X}\\")
        assert text == "a<U+000A>b<U+000D><U+2028><U+007B>$X<U+007D><U+005C>"


# --- The real tools accept every one of them -----------------------------------


def hostile_configs(kind: str) -> list[tuple[str, str]]:
    configs = [
        (repr(name), proxyconfig.render(server_for(name=name), kind))
        for name in HOSTILE_NAMES
    ]
    configs += [
        (
            repr(path),
            proxyconfig.compose(server_for("http://127.0.0.1:8042" + path), kind),
        )
        for path in HOSTILE_PATHS
    ]
    return configs


@pytest.mark.peers
class TestTheRealToolsAcceptThem:
    def test_nginx_t_accepts_every_hostile_configuration(self, tmp_path: Path) -> None:
        peers.require(peers.NGINX)
        for label, config in hostile_configs("nginx"):
            result = peers.nginx_syntax(tmp_path, config)
            assert result.returncode == 0, f"{label}: {result.stderr}"

    def test_apache2_t_accepts_every_hostile_configuration(
        self, tmp_path: Path
    ) -> None:
        peers.require(peers.APACHE)
        for label, config in hostile_configs("apache"):
            main = peers.apache_main_config(tmp_path, config, peers.free_port())
            result = subprocess.run(
                [peers.APACHE, "-t", "-f", str(main)], capture_output=True, text=True
            )
            assert result.returncode == 0, f"{label}: {result.stderr}"

    def test_caddy_validate_accepts_every_hostile_configuration(
        self, tmp_path: Path
    ) -> None:
        peers.require(peers.CADDY)
        for label, config in hostile_configs("caddy"):
            result = peers.caddy_validate(config, tmp_path)
            assert result.returncode == 0, f"{label}: {result.stdout}{result.stderr}"

    def test_the_tools_do_reject_the_injections_these_would_have_been(
        self, tmp_path: Path
    ) -> None:
        # Proves the three runs above can fail: the unescaped forms break.
        peers.require(peers.NGINX, peers.APACHE, peers.CADDY)
        nginx = proxyconfig.render(server_for(), "nginx").replace(
            '"http://127.0.0.1:8042/dicom-web/"', "http://127.0.0.1:8042/dicom{web/"
        )
        assert peers.nginx_syntax(tmp_path, nginx).returncode != 0
        apache = proxyconfig.render(server_for(), "apache") + "\n# a\nBogus x\n"
        main = peers.apache_main_config(tmp_path, apache, peers.free_port())
        assert subprocess.run(
            [peers.APACHE, "-t", "-f", str(main)], capture_output=True
        ).returncode
        caddy = proxyconfig.render(server_for(), "caddy").replace(
            '"/dicom-web/*"', "/dicom-web/* }"
        )
        assert peers.caddy_validate(caddy, tmp_path).returncode


# --- The gated variants (edge enforcement on) ------------------------------------

EDGE_KEY = "12.Edge-key_value"


def gated(server: DicomWebServer) -> DicomWebServer:
    server.edge_enforced = True  # type: ignore[attr-defined,unused-ignore]
    return server


def gated_configs(server: DicomWebServer, kind: str) -> list[str]:
    """What a page shows (placeholder) and what the edge-key answer holds."""
    configs = [proxyconfig.render(gated(server), kind)]
    if kind != "apache":
        configs.append(proxyconfig.render_gated(server, EDGE_KEY)[kind])
    return configs


def gated_composed(server: DicomWebServer, kind: str) -> str:
    return proxyconfig.compose(
        gated(server), kind, proxyconfig.gate_for(server, EDGE_KEY)
    )


class TestHostileGated:
    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    def test_a_hostile_name_changes_no_directive(self, kind: str, name: str) -> None:
        plains = gated_configs(server_for(), kind)
        for server in (server_for(name=name), server_for(institution=name)):
            for config, plain in zip(gated_configs(server, kind), plains, strict=True):
                assert shape(config, kind) == shape(plain, kind)
                assert len(config.splitlines()) == len(plain.splitlines())
                assert all(printable(line) for line in config.splitlines())
                assert "{$" not in config

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    @pytest.mark.parametrize("path", HOSTILE_PATHS)
    def test_a_hostile_path_keeps_the_shape(self, kind: str, path: str) -> None:
        plain = gated_composed(server_for(), kind)
        config = gated_composed(server_for("http://127.0.0.1:8042" + path), kind)
        assert shape(config, kind) == shape(plain, kind)
        assert len(config.splitlines()) == len(plain.splitlines())

    @pytest.mark.parametrize("kind", ["nginx", "caddy"])
    def test_the_gate_is_part_of_the_shape_compared(self, kind: str) -> None:
        assert shape(gated_composed(server_for(), kind), kind) != shape(
            proxyconfig.compose(server_for(), kind), kind
        )

    @pytest.mark.parametrize(
        "key", ['k"; internal; "', "k{http.request.host}", "k$host", "k\nlisten 80;"]
    )
    def test_a_hostile_key_is_refused_not_written(self, key: str) -> None:
        with pytest.raises(proxyconfig.ConfigRefused, match="edge key"):
            proxyconfig.render_gated(server_for(), key)

    @pytest.mark.peers
    def test_nginx_t_and_caddy_validate_accept_every_hostile_one(
        self,
        tmp_path: Path,
        settings,  # type: ignore[no-untyped-def]
    ) -> None:
        peers.require(peers.NGINX, peers.CADDY)
        # nginx -t resolves the registry's name: no DNS here.
        settings.REGISTRY_PUBLIC_ORIGIN = "https://127.0.0.1:8443"
        for kind in ("nginx", "caddy"):
            configs = [
                config
                for name in HOSTILE_NAMES
                for config in gated_configs(server_for(name=name), kind)
            ]
            configs += [
                gated_composed(server_for("http://127.0.0.1:8042" + path), kind)
                for path in HOSTILE_PATHS
            ]
            for config in configs:
                if kind == "nginx":
                    site = peers.patch_edge_cache(config)
                    result = peers.nginx_syntax(tmp_path, site)
                else:
                    result = peers.caddy_validate(config, tmp_path)
                assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.peers
    def test_apache2_t_accepts_the_gated_ones(self, tmp_path: Path) -> None:
        peers.require(peers.APACHE)
        for name in HOSTILE_NAMES:
            config = proxyconfig.render(gated(server_for(name=name)), "apache")
            main = peers.apache_main_config(tmp_path, config, peers.free_port())
            result = subprocess.run(
                [peers.APACHE, "-t", "-f", str(main)], capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr


# --- Rows stored before the rule -------------------------------------------------

BAD_STORED = "http://pacs.example.org/dicom;web"


class RowsStoredBeforeTheRule(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = get_user_model().objects.create_superuser("admin", "a@b.example")
        cls.key, cls.raw = api_key("deploy-bot", "manage")
        hospital = make_institution()
        cls.good = make_server(hospital, "Good PACS")
        cls.bad = make_server(hospital, "Old PACS")
        # Written around the validator, as rows from before the rule were.
        DicomWebServer.objects.filter(pk=cls.bad.pk).update(wado_url=BAD_STORED)
        cls.request = submitted_request()
        OnboardingRequest.objects.filter(pk=cls.request.pk).update(
            qido_url="http://$http_x_target/dicom-web"
        )

    def test_the_system_check_lists_each_bad_row_with_its_field_and_reason(
        self,
    ) -> None:
        found = [
            m for m in run_checks(databases=["default"]) if m.id.startswith("integ")
        ]
        assert [m.id for m in found] == ["integrations.W002", "integrations.W003"]
        server, request = found
        assert f"DICOMweb server {self.bad.pk}, wado_url:" in server.msg
        assert "“;”" in server.msg
        assert self.request.reference in request.msg
        assert "qido_url" in request.msg and "“$”" in request.msg

    def test_the_check_is_a_database_check_quiet_without_a_database(self) -> None:
        assert not [m for m in run_checks() if m.id.startswith("integrations.W00")]

    def test_the_api_answers_409_naming_the_field_and_the_character(self) -> None:
        for kind in proxyconfig.KINDS:
            response = self.client.get(
                f"/api/v1/servers/{self.bad.pk}/proxy-config/{kind}",
                **key_header(self.raw),
            )
            assert response.status_code == 409
            detail = response.json()["detail"]
            assert "WADO URL" in detail and "“;”" in detail
            assert BAD_STORED in detail
        good = self.client.get(
            f"/api/v1/servers/{self.good.pk}/proxy-config/nginx",
            **key_header(self.raw),
        )
        assert good.status_code == 200
        assert good["Content-Type"].startswith("text/plain")

    def test_the_admin_server_page_shows_the_message_instead_of_configurations(
        self,
    ) -> None:
        self.client.force_login(self.admin)
        response = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.bad.pk}/change/"
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "pi-fixit-refused" in page
        assert "breaks the URL rule" in page and "WADO URL" in page
        assert "proxy_pass" not in page
        good = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.good.pk}/change/"
        )
        assert "proxy_pass" in good.content.decode()

    def test_the_status_page_shows_the_message_instead_of_configurations(
        self,
    ) -> None:
        response = self.client.get(f"/onboarding/status/{status_link(self.request)}/")
        assert response.status_code == 200
        page = response.content.decode()
        assert "fixit-refused" in page
        assert "QIDO URL breaks the URL rule" in page
        assert "proxy_pass" not in page
        # The page's connect-src gets no origin from the broken URL.
        assert "$http_x_target" not in response["Content-Security-Policy"]


# --- Pacsbin's proxy: config.jsonc ---------------------------------------------
# Every value is a JSON string written by json.dumps (ASCII, escaped), every
# comment a // line made printable: a name or an AE title (printable ASCII,
# quotes and slashes allowed by DICOM) never changes the document's shape.

HOSTILE_AE_TITLES = [
    '"}],"x":{"',
    "//*/ /*",
    "A'B\"C",
    "*",
    "}]}",
]
PROXY_ORIGIN = "https://pacs-proxy.hospital.example"


def proxied_server_for(
    name: str = PLAIN_NAME, ae_title: str = "PACS_SERVER", **settings: object
) -> DicomWebServer:
    """An unsaved server behind Pacsbin's proxy (dimse mode)."""
    return DicomWebServer(
        pk=13,
        institution=Institution(name=name),
        name=name,
        qido_url=PROXY_ORIGIN,
        wado_url=PROXY_ORIGIN,
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": ae_title,
            "archive_host": "10.1.2.3",
            "archive_port": 11112,
            "proxy_ae_title": ae_title,
            "proxy_dimse_port": 8888,
            **settings,
        },
    )


def jsonc_values(text: str) -> object:
    return json.loads(
        "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("//")
        )
    )


class TestPacsbinConfig:
    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    def test_a_hostile_name_stays_in_its_comment_lines(self, name: str) -> None:
        plain = proxyconfig.render(proxied_server_for(), "pacsbin")
        text = proxyconfig.render(proxied_server_for(name), "pacsbin")
        assert jsonc_values(text) == jsonc_values(plain)
        assert len(text.splitlines()) == len(plain.splitlines())

    @pytest.mark.parametrize("title", HOSTILE_AE_TITLES)
    def test_a_hostile_ae_title_is_one_json_string(self, title: str) -> None:
        values = jsonc_values(
            proxyconfig.render(proxied_server_for(ae_title=title), "pacsbin")
        )
        assert values["dimseProxySettings"]["peers"][0]["aet"] == title  # type: ignore[index]
        assert values["proxyMode"] == "dimse"  # type: ignore[index]

    @pytest.mark.parametrize(
        ("stored", "named"),
        [
            ({"archive_ae_title": "A\nB"}, "U+000A"),
            ({"archive_host": 'evil","x'}, "archive_host"),
            ({"archive_port": "1; rm"}, "archive_port"),
            ({"mode": "dimse", "extra": "\x00"}, "“extra”"),
        ],
    )
    def test_settings_stored_around_the_rule_are_refused_naming_them(
        self, stored: dict[str, object], named: str
    ) -> None:
        with pytest.raises(proxyconfig.ConfigRefused) as refused:
            proxyconfig.render(proxied_server_for(**stored), "pacsbin")
        assert named in str(refused.value)

    def test_a_wildcard_origin_is_refused(self, settings) -> None:  # type: ignore[no-untyped-def]
        settings.UPLOADER_ORIGINS = ["https://*.pacsbin.com"]
        with pytest.raises(proxyconfig.ConfigRefused, match="wildcard"):
            proxyconfig.render(proxied_server_for(), "pacsbin")

    @pytest.mark.peers
    def test_the_proxys_own_loader_reads_every_hostile_one_as_written(
        self, pacsbin_proxy_entry: Path, tmp_path: Path
    ) -> None:
        plain = peers.pacsbin_config_check(
            pacsbin_proxy_entry,
            proxyconfig.render(proxied_server_for(), "pacsbin"),
            tmp_path,
        )
        for name in HOSTILE_NAMES:
            text = proxyconfig.render(proxied_server_for(name), "pacsbin")
            assert (
                peers.pacsbin_config_check(pacsbin_proxy_entry, text, tmp_path) == plain
            )
        for title in HOSTILE_AE_TITLES:
            text = proxyconfig.render(proxied_server_for(ae_title=title), "pacsbin")
            loaded = peers.pacsbin_config_check(pacsbin_proxy_entry, text, tmp_path)
            assert loaded["dimseProxySettings"]["peers"][0]["aet"] == title
            assert loaded["dimseProxySettings"]["proxyServer"]["aet"] == title
            assert {k: v for k, v in loaded.items() if k != "dimseProxySettings"} == {
                k: v for k, v in plain.items() if k != "dimseProxySettings"
            }
