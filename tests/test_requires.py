"""tests/_requires.py: a missing test package skips outside CI and fails in CI, naming the package and the install."""
import json

import pytest

from _requires import INSTALL, require, strict


@pytest.mark.parametrize("value, expect", [(None, False), ("", False), ("false", False), ("False", False), ("0", False),
                                           ("no", False), ("true", True), ("1", True), ("yes", True)])
def test_ci_set_and_not_false_is_strict(monkeypatch, value, expect):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert strict() is expect


def test_a_missing_package_skips_outside_ci_and_fails_in_ci(monkeypatch):
    said = rf"no-such-package is not installed \(No module named 'no_such_module_x'\): install it with {INSTALL}"
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=said):
        require("no_such_module_x", "no-such-package")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this fails instead of skipping: " + said):
        require("no_such_module_x", "no-such-package")


def test_an_installed_module_or_its_older_name_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require("json") is json
    assert require("no_such_module_x", "p", alternatives=("json",)) is json
