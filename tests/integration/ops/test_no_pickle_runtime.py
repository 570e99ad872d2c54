"""At run time too, nothing on the serving path unpickles: loading a model version and answering
requests must not make Python's unpickler resolve a single class (audit event `pickle.find_class`,
raised for every object a pickle rebuilds). This catches pickle use hidden inside a dependency,
which the static scan in tests/unit/test_no_pickle.py cannot see."""

from __future__ import annotations

import importlib
import sys
from decimal import Decimal

from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.model.artifacts import current_version, load_version

_unpickled: list[str] = []
_watching: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if _watching and event == "pickle.find_class":
        _unpickled.append(f"{args[0]}.{args[1]}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while a test watches


def watch() -> None:
    _unpickled.clear()
    _watching[:] = [True]


def stop_watching() -> list[str]:
    _watching.clear()
    return list(_unpickled)


def test_the_audit_hook_sees_unpickling():
    # The one deliberate unpickling in the tree, of bytes made right here (see test_no_pickle.py).
    pickle = importlib.import_module("pickle")
    data = pickle.dumps(Decimal("1.5"))
    watch()
    assert pickle.loads(data) == Decimal("1.5")
    assert "decimal.Decimal" in stop_watching()


def test_loading_a_model_and_serving_never_unpickles(trained):
    watch()
    try:
        index = load_version(trained.model_dir, current_version(trained.model_dir))
        with TestClient(create_app(trained)) as client:
            assert client.get("/ready").json()["model_version"] == index.version
            for path in (
                "/api/v1/recommendations/products/user_00001",
                "/api/v1/recommendations/products/newcomer?age_group=25-34",
                "/api/v1/recommendations/similar-products/prod_0001",
                "/api/v1/recommendations/session/sess_none",
            ):
                assert client.get(path).status_code == 200, path
    finally:
        unpickled = stop_watching()
    assert unpickled == []
