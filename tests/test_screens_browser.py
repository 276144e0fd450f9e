"""Every screen a staffer or a hospital's IT contact uses, measured in Debian's
Chromium on realistic data (long names and URLs, check history, failing and
healthy servers, a clashing request, a DIMSE archive):

- no page scrolls sideways (admin at 1280×800; public pages and the review
  page also at 390×844), and no visible element cuts its text off or scrolls
  sideways inside itself (a configuration file may, in its own box);
- the server page's approve box is in the first screen, and a bad paste
  lands with the error naming the bad value in view;
- the approve box, the user search and the email lookup have real labels;
- the review page shows the name clash on a phone.

Screenshots go to test-artifacts/screenshots/ (git-ignored), or with
ONBOARDING_SCREENSHOTS_DIR=docs/screenshots to the README's folder.

As in tests/test_onboarding_browser.py, the database work happens before the
browser opens (Django refuses ORM calls inside Playwright's event loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from integrations import registry
from integrations.models import (
    ConnectivityCheck,
    DicomWebServer,
    EdgeUsage,
    Institution,
    ServerHealth,
)
from integrations.onboarding.links import confirmation_link, status_link
from tests import peers
from tests.factories import submitted_request
from tests.test_onboarding_browser import (  # noqa: F401 -- chromium is a fixture
    PASSWORD,
    SCREENSHOTS,
    chromium,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

LONG_INSTITUTION = (
    "Universitätsklinikum Schleswig-Holstein, Campus Kiel — Klinik für "
    "Radiologie und Neuroradiologie"
)
LONG_SERVER = "Neuroradiology research vendor-neutral archive (long-term storage)"
LONG_URL = (
    "https://pacs-proxy.radiology-department.uksh-kiel.university-hospital.example"
    "/dicom-web/studies-service/qido-rs"
)

# One pass over the page: the document's width, and every visible element
# that hides or side-scrolls text it cannot fit. Boxes meant to scroll
# (configuration files, text areas) and things that are no text are skipped.
MEASURE = """
() => {
  const skipTags = new Set(['SCRIPT', 'STYLE', 'INPUT', 'SELECT', 'TEXTAREA',
    'OPTION', 'PRE', 'BR', 'IMG', 'HTML', 'BODY', 'HEAD', 'TITLE', 'META',
    'LINK', 'NOSCRIPT', 'TEMPLATE', 'IFRAME']);
  const meantToScroll = 'pre, textarea, .pi-config, svg, [hidden]';
  const found = [];
  for (const el of document.querySelectorAll('body *')) {
    if (skipTags.has(el.tagName) || el.closest(meantToScroll)) continue;
    if (el instanceof SVGElement) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility !== 'visible') continue;
    const box = el.getBoundingClientRect();
    // Visually hidden (screen-reader only) text is a 1 px clipped box.
    if (box.width <= 1 || box.height <= 1) continue;
    if (style.position === 'absolute' && style.clip !== 'auto') continue;
    if (!el.innerText || !el.innerText.trim()) continue;
    const hides = ['hidden', 'clip'].includes(style.overflowX)
      || style.textOverflow === 'ellipsis';
    const scrolls = ['auto', 'scroll'].includes(style.overflowX);
    if (!hides && !scrolls) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      found.push({
        tag: el.tagName.toLowerCase(),
        id: el.id,
        cls: String(el.className).slice(0, 60),
        text: el.innerText.trim().replace(/\\s+/g, ' ').slice(0, 60),
        scrollWidth: el.scrollWidth,
        clientWidth: el.clientWidth,
        how: hides ? 'cuts' : 'scrolls sideways',
      });
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    found: found,
  };
}
"""


@dataclass
class Screens:
    admin: list[str] = field(default_factory=list)  # paths, 1280 only
    both: list[str] = field(default_factory=list)  # paths, 1280 and 390
    server: int = 0  # the long-named server with history
    clash_review: str = ""


def realistic_registry() -> Screens:
    """Long names, a server with check history, failing and healthy
    monitoring, a DIMSE archive, a clashing pending request."""
    now = timezone.now()
    get_user_model().objects.create_superuser("staff", "staff@example.org", PASSWORD)
    kiel = Institution.objects.create(
        name=LONG_INSTITUTION,
        contact_name="Dr. Maximiliane Mustermann-Schleswig-Holsteinerin",
        contact_email="pacs-administration.neuroradiologie@uksh-kiel.example",
        notes="Archive team on call weekdays 08:00–17:00; change window Thursday.",
    )
    long_one = DicomWebServer.objects.create(
        institution=kiel,
        name=LONG_SERVER,
        qido_url=LONG_URL,
        wado_url=LONG_URL.replace("qido-rs", "wado-rs"),
        status=DicomWebServer.Status.ACTIVE,
        cors_mode=DicomWebServer.CorsMode.REVERSE_PROXY,
        edge_enforced=True,
    )
    healthy = DicomWebServer.objects.create(
        institution=kiel,
        name="Main PACS",
        qido_url="https://pacs.uksh-kiel.example/dicomweb",
        wado_url="https://pacs.uksh-kiel.example/dicomweb",
        status=DicomWebServer.Status.ACTIVE,
    )
    dimse = DicomWebServer.objects.create(
        institution=kiel,
        name="Cardiology DIMSE-only archive behind Pacsbin's proxy",
        qido_url="https://dimse-proxy.cardiology.uksh-kiel.example",
        wado_url="https://dimse-proxy.cardiology.uksh-kiel.example",
        status=DicomWebServer.Status.PENDING,
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": "CARDIO_ARCHIVE",
            "archive_host": "cardio-archive.internal.uksh-kiel.example",
            "archive_port": 11112,
            "proxy_ae_title": "PACSBIN_PROXY",
            "proxy_dimse_port": 11113,
        },
    )
    registry.add_approved_users(
        long_one,
        [
            "maximiliane.mustermann-schleswig-holsteinerin@neuroradiologie.uksh-kiel.example",
            *(f"resident{i:02d}@uksh-kiel.example" for i in range(30)),
        ],
    )
    registry.add_approved_users(healthy, ["jane.doe@uksh-kiel.example"])
    ServerHealth.objects.create(
        server=long_one,
        state="failing",
        since=now - timedelta(hours=5),
        last_checked_at=now - timedelta(minutes=3),
        last_ok_at=now - timedelta(hours=6),
        outcome="unreachable",
        consecutive_failures=12,
    )
    ServerHealth.objects.create(
        server=healthy,
        state="ok",
        since=now - timedelta(days=3),
        last_checked_at=now - timedelta(minutes=1),
        last_ok_at=now - timedelta(minutes=1),
        outcome="ok",
        tls_expires_at=now + timedelta(days=40),
        capabilities={"includefield_tag": True, "fuzzy_matching": False},
        capabilities_learnt_at=now,
    )
    findings = [
        {
            "code": "cors_missing",
            "message": "The archive answered without Access-Control-Allow-Origin "
            f"for https://pacsbin.com at {LONG_URL}/studies?limit=1&includefield="
            "00080020,00080030,00080050,00100010,00100020,0020000D",
        }
    ]
    for hours, outcome in ((50, "ok"), (30, "cors_missing"), (2, "unreachable")):
        check = ConnectivityCheck.objects.create(
            server=long_one,
            source="server",
            origin="https://uploader.pacsbin.com",
            outcome=outcome,
            findings=[] if outcome == "ok" else findings,
        )
        ConnectivityCheck.objects.filter(pk=check.pk).update(
            created_at=now - timedelta(hours=hours)
        )
    EdgeUsage.objects.create(
        server=long_one,
        email="resident01@uksh-kiel.example",
        day=now.date(),
        granted=120,
        refused=4,
        last_used_at=now - timedelta(minutes=7),
    )
    clash = submitted_request(
        institution_name=LONG_INSTITUTION,
        contact_email="pacs-administration.neuroradiologie@uksh-kiel.example",
        server_name="main pacs",
        qido_url=LONG_URL,
        wado_url=LONG_URL,
    )
    dimse_request = submitted_request(
        institution_name="Kreiskrankenhaus Rendsburg-Eckernförde Kardiologie",
        server_name="Cardiology DIMSE archive",
        qido_url="https://dimse-proxy.rendsburg-eckernfoerde.example",
        wado_url="https://dimse-proxy.rendsburg-eckernfoerde.example",
        cors_mode="dimse_proxy",
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": "RENDSBURG_PACS",
            "archive_host": "10.20.30.40",
            "archive_port": 104,
            "proxy_ae_title": "PACSBIN_RD",
            "proxy_dimse_port": 11112,
        },
    )
    unconfirmed = submitted_request(
        confirmed=False,
        institution_name="Westküstenklinikum Heide",
        contact_email="it-service@westkuestenklinikum.example",
        server_name="Heide PACS",
    )
    approved = long_one.approved_users.order_by("pk").first()
    assert approved is not None
    a = "/admin/integrations"
    screens = Screens(server=long_one.pk)
    screens.clash_review = f"{a}/onboardingrequest/{clash.pk}/change/"
    screens.admin = [
        "/admin/",
        f"{a}/dicomwebserver/",
        f"{a}/dicomwebserver/{long_one.pk}/change/",
        f"{a}/dicomwebserver/{healthy.pk}/change/",
        f"{a}/dicomwebserver/{dimse.pk}/change/",
        f"{a}/dicomwebserver/add/",
        f"{a}/dicomwebserver/{long_one.pk}/history/",
        f"{a}/dicomwebserver/{long_one.pk}/edge-usage/",
        f"{a}/dicomwebserver/{long_one.pk}/edge-key/",
        f"{a}/institution/",
        f"{a}/institution/{kiel.pk}/change/",
        f"{a}/institution/{kiel.pk}/history/",
        f"{a}/approveduser/",
        f"{a}/approveduser/?server__id__exact={long_one.pk}",
        f"{a}/approveduser/{approved.pk}/change/",
        f"{a}/approveduser/{approved.pk}/history/",
        f"{a}/approveduser/lookup/?email=resident01%40uksh-kiel.example",
        f"{a}/approveduser/lookup/?email=resident01%40uksh-kiel.example"
        f"&server={long_one.pk}",
        f"{a}/onboardingrequest/",
        f"{a}/onboardingrequest/?status__exact=waiting",
        f"{a}/onboardingrequest/{dimse_request.pk}/change/",
        f"{a}/serverhealth/",
        f"{a}/serverhealth/{long_one.pk}/change/",
        f"{a}/apikey/",
        f"{a}/apikey/add/",
    ]
    screens.both = [
        "/",
        "/onboarding/",
        f"/onboarding/status/{status_link(clash)}/",
        f"/onboarding/status/{status_link(dimse_request)}/",
        f"/onboarding/confirm/{confirmation_link(unconfirmed)}/",
        screens.clash_review,
    ]
    return screens


@contextmanager
def staff_page(base: str, *, log_in: bool = True) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = peers.launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.set_default_timeout(15_000)
            if log_in:
                page.goto(f"{base}/admin/login/")
                page.fill("#id_username", "staff")
                page.fill("#id_password", PASSWORD)
                page.click("input[type=submit]")
                page.wait_for_url(f"{base}/admin/")
            yield page
        finally:
            browser.close()


def problems_on(page: Any, base: str, path: str, size: dict[str, int]) -> list[str]:
    page.set_viewport_size(size)
    response = page.goto(base + path)
    where = f"{path} at {size['width']}×{size['height']}"
    if response is None or response.status != 200:
        return [f"{where}: HTTP {response.status if response else '?'}"]
    seen = page.evaluate(MEASURE)
    problems = []
    if seen["scrollWidth"] > seen["innerWidth"]:
        problems.append(
            f"{where}: the page is {seen['scrollWidth']} px wide "
            f"in a {seen['innerWidth']} px window"
        )
    problems.extend(
        f"{where}: <{f['tag']} id={f['id']!r} class={f['cls']!r}> {f['how']} "
        f"“{f['text']}” ({f['scrollWidth']} px of text in {f['clientWidth']} px)"
        for f in seen["found"]
    )
    return problems


def test_no_screen_scrolls_sideways_or_cuts_its_text(
    chromium: str,  # noqa: F811
    live_server: Any,
) -> None:
    screens = realistic_registry()
    base = live_server.url
    problems: list[str] = []
    with staff_page(base) as page:
        for path in screens.admin + screens.both:
            problems += problems_on(page, base, path, DESKTOP)
        for path in screens.both:
            problems += problems_on(page, base, path, PHONE)
    assert problems == [], "\n".join(problems)


def on_the_server_page(live_server: Any) -> tuple[Screens, str, str]:
    screens = realistic_registry()
    base = live_server.url
    return (
        screens,
        base,
        f"{base}/admin/integrations/dicomwebserver/{screens.server}/change/",
    )


def test_the_server_page_puts_the_approve_box_and_its_errors_in_view(
    chromium: str,  # noqa: F811
    live_server: Any,
) -> None:
    screens, base, url = on_the_server_page(live_server)
    with staff_page(base) as page:
        page.goto(url)
        box = page.get_by_label("Approve emails")
        assert box.evaluate("el => el.tagName") == "TEXTAREA"
        top = box.evaluate("el => el.getBoundingClientRect().top")
        assert 0 < top < DESKTOP["height"] - 100, f"the approve box starts at {top}"
        save = page.get_by_role("button", name="Save and approve")
        assert save.evaluate("el => el.getBoundingClientRect().bottom") < 800
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "server-page.png"))
        # The other two questions of the page, by their labels.
        assert page.get_by_label("Search this server's approved users").is_visible()
        assert page.get_by_label("What does this email see?").is_visible()

        box.fill("resident99@uksh-kiel.example\nnot-an-email")
        save.click()
        page.wait_for_load_state()
        error = page.get_by_text("“not-an-email” is not a valid email address")
        error.wait_for()
        assert in_view(error), "the paste's error is out of view"
        assert page.evaluate("document.activeElement.name") == "add_emails"
        assert page.get_by_label("Approve emails").input_value() == (
            "resident99@uksh-kiel.example\nnot-an-email"
        )
        page.screenshot(path=str(SCREENSHOTS / "server-page-bad-paste.png"))

        # An error lower down lands there too (here: a URL in "Endpoints").
        page.goto(url)
        page.fill("#id_qido_url", "ftp://pacs.example/dicom-web")
        page.get_by_role("button", name="Save", exact=True).first.click()
        page.wait_for_load_state()
        assert page.evaluate("document.activeElement.name") == "qido_url"
        url_error = page.locator(".field-qido_url .errorlist")
        assert in_view(url_error), "the URL's error is out of view"


def test_the_search_and_the_lookup_answer_from_the_server_page(
    chromium: str,  # noqa: F811
    live_server: Any,
) -> None:
    screens, base, url = on_the_server_page(live_server)
    with staff_page(base) as page:
        page.goto(url)
        page.get_by_label("Search this server's approved users").fill("resident0")
        page.get_by_label("Search this server's approved users").press("Enter")
        page.wait_for_url("**/approveduser/**")
        assert f"server__id__exact={screens.server}" in page.url
        assert "10 approved users" in page.inner_text("#changelist")

        page.goto(url)
        page.get_by_label("What does this email see?").fill(
            "Resident01@UKSH-Kiel.example"
        )
        page.get_by_role("button", name="Look up").click()
        page.wait_for_url("**/lookup/**")
        assert "Yes: approved, and the server is active." in page.inner_text("#may-use")


def test_the_review_page_shows_the_name_clash_on_a_phone(
    chromium: str,  # noqa: F811
    live_server: Any,
) -> None:
    screens = realistic_registry()
    base = live_server.url
    with staff_page(base) as page:
        page.set_viewport_size(PHONE)
        page.goto(base + screens.clash_review)
        clash = page.locator("#name-clash")
        assert clash.is_visible()
        assert "main pacs" in clash.inner_text()
        box = clash.evaluate("el => el.getBoundingClientRect().right")
        assert box <= PHONE["width"], f"the clash runs to {box} px"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(
            path=str(SCREENSHOTS / "onboarding-review-phone.png"), full_page=True
        )


def in_view(locator: Any) -> bool:
    return bool(
        locator.evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight; }"
        )
    )
