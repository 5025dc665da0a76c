"""Scope resolution, case by case (pure function, no I/O)."""

from aami.server.resolution import PolicyRule, Scope, TargetContext, resolve

TARGET = TargetContext(target_id=7, group_priorities={1: 10, 2: 50})


def rule(id: int, scope: Scope, *, script: str = "disk", **kw) -> PolicyRule:
    return PolicyRule(id=id, name=f"p{id}", script_name=script, scope=scope, **kw)


def test_global_applies_to_everyone() -> None:
    [a] = resolve(TARGET, [rule(1, Scope.GLOBAL, params={"t": 80})])
    assert a.policy.id == 1 and a.params == {"t": 80}


def test_group_policy_applies_only_to_members() -> None:
    assert resolve(TARGET, [rule(1, Scope.GROUP, group_id=3)]) == []
    [a] = resolve(TARGET, [rule(1, Scope.GROUP, group_id=2)])
    assert a.policy.id == 1


def test_target_policy_applies_only_to_that_target() -> None:
    assert resolve(TARGET, [rule(1, Scope.TARGET, target_id=8)]) == []
    assert resolve(TARGET, [rule(1, Scope.TARGET, target_id=7)])[0].policy.id == 1


def test_more_specific_scope_wins_and_params_merge_in_order() -> None:
    policies = [
        rule(3, Scope.TARGET, target_id=7, params={"c": "target"}, interval_seconds=10),
        rule(1, Scope.GLOBAL, params={"a": "global", "b": "global", "c": "global"},
             interval_seconds=60),
        rule(2, Scope.GROUP, group_id=1, params={"b": "group", "c": "group"},
             interval_seconds=30),
    ]
    [a] = resolve(TARGET, policies, {"disk": {"a": "default", "d": "default"}})
    assert a.policy.id == 3 and a.policy.interval_seconds == 10
    assert a.params == {"a": "global", "b": "group", "c": "target", "d": "default"}


def test_higher_group_priority_wins_among_groups() -> None:
    low = rule(1, Scope.GROUP, group_id=1, params={"x": "low", "only_low": 1})
    high = rule(2, Scope.GROUP, group_id=2, params={"x": "high"})
    for order in ([low, high], [high, low]):
        [a] = resolve(TARGET, order)
        assert a.policy.id == 2
        assert a.params == {"x": "high", "only_low": 1}


def test_ties_go_to_policy_priority_then_older_policy() -> None:
    a1 = rule(5, Scope.GLOBAL, priority=1)
    a2 = rule(4, Scope.GLOBAL, priority=9)
    assert resolve(TARGET, [a1, a2])[0].policy.id == 4
    b1 = rule(5, Scope.GLOBAL)
    b2 = rule(4, Scope.GLOBAL)
    assert resolve(TARGET, [b1, b2])[0].policy.id == 4
    assert resolve(TARGET, [b2, b1])[0].policy.id == 4


def test_disabled_policies_are_ignored() -> None:
    enabled = rule(1, Scope.GLOBAL, params={"t": 1})
    disabled = rule(2, Scope.TARGET, target_id=7, params={"t": 2}, enabled=False)
    [a] = resolve(TARGET, [enabled, disabled])
    assert a.policy.id == 1 and a.params == {"t": 1}
    assert resolve(TARGET, [disabled]) == []


def test_one_assignment_per_script_sorted_by_name() -> None:
    result = resolve(TARGET, [rule(1, Scope.GLOBAL, script="zfs"),
                              rule(2, Scope.GLOBAL, script="gpu"),
                              rule(3, Scope.GROUP, script="gpu", group_id=1)])
    assert [(a.policy.script_name, a.policy.id) for a in result] == [("gpu", 3), ("zfs", 1)]


def test_target_without_groups_gets_global_and_own_policies() -> None:
    alone = TargetContext(target_id=9)
    result = resolve(alone, [rule(1, Scope.GLOBAL, script="a"),
                             rule(2, Scope.GROUP, script="b", group_id=1),
                             rule(3, Scope.TARGET, script="c", target_id=9)])
    assert [a.policy.id for a in result] == [1, 3]
