from pathlib import Path

import pytest

from finverse_reco.settings import Settings, SettingsError, load_settings, settings_env

README = Path(__file__).resolve().parents[2] / "README.md"


def test_seed_model_defaults():
    s = Settings(_env_file=None)
    assert (s.model_components, s.model_learning_rate, s.model_loss, s.model_epochs) == (
        50,
        0.05,
        "warp",
        20,
    )
    assert s.model_user_alpha == s.model_item_alpha == 1e-5
    assert s.store_url == "sqlite:///data/interactions.db"


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    missing = [n for n in Settings.model_fields if f"`FINVERSE_{n.upper()}`" not in readme]
    assert not missing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FINVERSE_PORT", "not-a-port"),
        ("FINVERSE_PORT", "70000"),
        ("FINVERSE_STORE_URL", "postgres://x"),
        ("FINVERSE_MODEL_LOSS", "hinge"),
        ("FINVERSE_REFRESH_SCHEDULE", "every tuesday"),
        ("FINVERSE_TYPE_WEIGHTS", '{"product_view": -1}'),
        ("FINVERSE_STORE_TRAINER_URL", "sqlite:///data/other.db"),
    ],
)
def test_a_bad_value_names_the_setting(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)
    assert variable in str(raised.value)


def test_production_refuses_the_default_key(monkeypatch):
    monkeypatch.setenv("FINVERSE_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="FINVERSE_API_KEY"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("schedule", ["@hourly", "*/5 * * * *", "15m", "2h", "off"])
def test_schedules(schedule):
    assert Settings(_env_file=None, refresh_schedule=schedule).refresh_schedule == schedule


def test_settings_env_round_trips(monkeypatch):
    original = Settings(
        _env_file=None, port=9001, cors_origins=["https://a.example"], type_weights={"favorite": 9}
    )
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert Settings(_env_file=None) == original


def test_a_trainer_url_needs_a_mongodb_store(monkeypatch):
    monkeypatch.setenv("FINVERSE_STORE_TRAINER_URL", "mongodb://secondary/finverse_interactions")
    with pytest.raises(SettingsError, match="FINVERSE_STORE_TRAINER_URL needs a MongoDB"):
        load_settings(_env_file=None)
    monkeypatch.setenv("FINVERSE_STORE_URL", "mongodb://primary/finverse_interactions")
    assert load_settings(_env_file=None).store_trainer_url.startswith("mongodb://secondary")


def test_writer_keys_are_a_json_list_distinct_from_the_admin_key(monkeypatch):
    monkeypatch.setenv("FINVERSE_WRITER_API_KEYS", '["writer-one-key", "writer-two-key"]')
    assert load_settings(_env_file=None).writer_api_keys == ["writer-one-key", "writer-two-key"]
    with pytest.raises(SettingsError, match="FINVERSE_WRITER_API_KEYS"):
        load_settings(_env_file=None, api_key="writer-one-key")


def test_production_refuses_the_default_writer_key():
    with pytest.raises(SettingsError, match="FINVERSE_WRITER_API_KEYS"):
        load_settings(_env_file=None, environment="production", api_key="a-real-admin-secret")
    with pytest.raises(SettingsError, match="FINVERSE_ERASURE_KEY"):
        load_settings(
            _env_file=None,
            environment="production",
            api_key="a-real-admin-secret",
            writer_api_keys=["a-real-writer-key"],
        )
    ok = load_settings(
        _env_file=None,
        environment="production",
        api_key="a-real-admin-secret",
        writer_api_keys=["a-real-writer-key"],
        erasure_key="a-real-erasure-secret",
    )
    assert ok.writer_api_keys == ["a-real-writer-key"]


def test_the_event_window_needs_a_time_zone():
    with pytest.raises(SettingsError, match="FINVERSE_EVENT_EARLIEST"):
        load_settings(_env_file=None, event_earliest="2000-01-01T00:00:00")


def test_production_refuses_to_switch_the_audit_trail_off():
    secrets = {
        "api_key": "a-real-admin-secret",
        "writer_api_keys": ["a-real-writer-key"],
        "erasure_key": "a-real-erasure-secret",
    }
    with pytest.raises(SettingsError, match="FINVERSE_AUDIT_ENABLED"):
        load_settings(_env_file=None, environment="production", audit_enabled=False, **secrets)
    assert not load_settings(_env_file=None, audit_enabled=False).audit_enabled  # measurements
