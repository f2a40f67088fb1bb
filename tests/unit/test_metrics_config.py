"""The metrics keys of the config tree: metrics/listen and the pool-use alarm thresholds,
refused with file, value and rule like every other key; a reload names what changed."""

from __future__ import annotations

import pytest

from appliance.config.model import diff, drift_summary, plan
from appliance.config.tree import ConfigError, load, write_tree
from appliance.testing.trees import standalone_tree


def test_metrics_off_unless_listen_is_set(tmp_path):
    assert load(standalone_tree(tmp_path / "a")).metrics.listen == ""
    empty = standalone_tree(tmp_path / "b")
    (empty / "metrics").mkdir()
    (empty / "metrics" / "listen").write_text("# off for now\n\n")
    assert load(empty).metrics.listen == ""
    on = load(standalone_tree(tmp_path / "c", extra={"metrics/listen": "192.0.2.2:9467"}))
    assert on.metrics.listen == "192.0.2.2:9467"


@pytest.mark.parametrize("value,rule", [
    ("192.0.2.2", "ADDRESS:PORT"),
    ("192.0.2.2:0", "port in 1..65535"),
    ("localhost:9467", "not an IPv4 address"),
    ("192.0.2.2:9467\n192.0.2.3:9467", "exactly one value"),
])
def test_bad_listen_names_file_value_and_rule(tmp_path, value, rule):
    root = standalone_tree(tmp_path, extra={"metrics/listen": value})
    with pytest.raises(ConfigError) as e:
        load(root)
    msg = str(e.value)
    assert f"{root}/metrics/listen" in msg and rule in msg, msg


def test_unknown_metrics_setting_is_a_typo(tmp_path):
    root = standalone_tree(tmp_path, extra={"metrics/port": "9467"})
    with pytest.raises(ConfigError, match=r"metrics/port.*unknown setting"):
        load(root)


def test_pool_alarm_thresholds(tmp_path):
    cfg = load(standalone_tree(tmp_path / "a"))
    assert (cfg.pools[0].alarm_percent, cfg.pools[0].alarm_clear) == (90, 80)  # defaults
    cfg = load(standalone_tree(tmp_path / "b", extra={"pools/lan/alarm_percent": "75",
                                                      "pools/lan/alarm_clear_percent": "40"}))
    assert (cfg.pools[0].alarm_percent, cfg.pools[0].alarm_clear) == (75, 40)
    cfg = load(standalone_tree(tmp_path / "c", extra={"pools/lan/alarm_percent": "5"}))
    assert cfg.pools[0].alarm_clear == 1  # ten below, but at least 1
    cfg = load(standalone_tree(tmp_path / "d", extra={"pools/lan/alarm_percent": "0"}))
    assert cfg.pools[0].alarm_clear == 0  # no alarm


@pytest.mark.parametrize("extra,path,rule", [
    ({"pools/lan/alarm_percent": "101"}, "alarm_percent", "0..100"),
    ({"pools/lan/alarm_percent": "80", "pools/lan/alarm_clear_percent": "85"},
     "alarm_clear_percent", "must not exceed pools/lan/alarm_percent"),
])
def test_bad_alarm_threshold(tmp_path, extra, path, rule):
    root = standalone_tree(tmp_path, extra=extra)
    with pytest.raises(ConfigError) as e:
        load(root)
    assert f"pools/lan/{path}" in str(e.value) and rule in str(e.value), str(e.value)


def test_diff_names_the_metrics_keys(tmp_path):
    root = standalone_tree(tmp_path)
    old = load(root)
    write_tree(root, {"metrics/listen": "192.0.2.2:9467", "pools/lan/alarm_percent": "70"})
    new = load(root)
    assert diff(old, new) == ["metrics/listen", "pools/lan/alarm_percent"]
    # Both apply live: the endpoint moves (Reload.METRICS), the pools are rebuilt.
    p = plan(old, new)
    assert p.applied == ("metrics/listen", "pools/lan/alarm_percent")
    assert p.config.metrics.listen == "192.0.2.2:9467"
    assert "metrics/listen" not in dict(drift_summary(new))  # each device its own
