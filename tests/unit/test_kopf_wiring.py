"""The kopf wiring: only watch-event and activity handlers, which is what makes skipping kopf's diff-base safe."""

from __future__ import annotations

import kopf

from storage_token.process import handlers


def test_no_handler_needs_kopf_diff_base_or_progress() -> None:
    handlers.watch_workloads()  # registered at run time when workloads are watched: include them
    registry = kopf.get_default_registry()

    # on.create/update/delete/resume (changing) and daemons/timers (spawning) compare essences and
    # store progress; the NoDiffBase storage would break them, so none may exist.
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    watched = {h.selector.any_name for h in registry._watching.get_all_handlers() if h.selector is not None}
    assert {"storageproviders", "clusterstorageproviders", "deployments"} <= watched
    # The tokens have their own watch (kube.list_watch.TokenWatch): a kopf one too would double every event.
    assert "storagetokens" not in watched


def test_the_diff_base_is_never_built() -> None:
    storage = handlers.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "t"}, "spec": {"x": 1}, "status": {"y": 2}})

    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
