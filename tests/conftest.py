from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.api.auth import forget_keys
from integrations.edge import decisions as edge_decisions
from integrations.edge import keys as edge_keys
from integrations.edge import tokens as edge_tokens
from integrations.edge import usage as edge_usage
from tests import peers


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Orthanc]:
    """One Orthanc (DICOMweb plugin, two studies) for the whole run."""
    with peers.orthanc(tmp_path_factory.mktemp("orthanc")) as running:
        yield running


@pytest.fixture
def allow_private(settings):  # type: ignore[no-untyped-def]
    """CONNECTIVITY_ALLOW_PRIVATE on: the local test peers live on loopback."""
    settings.CONNECTIVITY_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _no_remembered_keys() -> Iterator[None]:
    """Each test looks its API keys up afresh: workers remember them for a
    few seconds (auth.KEY_CACHE_SECONDS), tests roll the database back."""
    forget_keys()
    _forget_edge()
    yield
    forget_keys()
    _forget_edge()


def _forget_edge() -> None:
    """The gate's signing keys, tokens, verified tokens, cached decisions and
    usage counts, kept per worker, came from a database the test rolls back."""
    edge_keys.forget()
    edge_tokens.forget()
    edge_decisions.forget(fresh_cache=True)
    edge_usage.forget()
    edge_usage.BACKGROUND_FLUSH = False


@pytest.fixture(scope="session")
def orthanc_dimse(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[peers.Orthanc]:
    """An Orthanc whose DIMSE port is open (and DICOMweb too), for Pacsbin's
    proxy in dimse mode; it answers only the modalities a test registers."""
    with peers.orthanc(tmp_path_factory.mktemp("orthanc-dimse"), dicom=True) as running:
        yield running


@pytest.fixture(scope="session")
def pacsbin_proxy_entry() -> Path:
    """Pacsbin's proxy built once (its build.sh, into a cache folder)."""
    return peers.build_pacsbin_proxy()
