"""Restarting a token's `restartTargets` after a rotation, only those that really consume its Secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage_token.api.times import format_time
from storage_token.api.token import TokenSpec
from storage_token.controllers.steps.base import KIND, RESTART_ANNOTATION, TokenSteps
from storage_token.kube.api import ApiError
from storage_token.policy.consumers import restart_refusal


class RestartSteps(TokenSteps):
    async def _restart_targets(self, token: dict[str, Any], spec: TokenSpec, now: datetime) -> None:
        """Annotate each target's pod template (a rolling restart); refuse, with an event, a workload
        that neither reads the Secret nor opts in: the operator is nobody's deputy for other workloads."""
        meta = token["metadata"]
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: format_time(now)}}}}}
        for target in spec.restart_targets:
            what = f"{target.kind} {target.name}"
            try:
                workload = await self.kube.get_workload(target.kind, meta["namespace"], target.name)
                if workload is None:
                    problem = "not found"
                elif refusal := restart_refusal(workload, meta["name"], spec.secret.name):
                    await self.events.record(
                        token, KIND, "RestartRefused", f"not restarting {what}: {refusal}", warning=True
                    )
                    continue
                elif await self.kube.patch_workload(target.kind, meta["namespace"], target.name, patch) is None:
                    problem = "not found"
                else:
                    continue
            except (ApiError, OSError) as error:  # best effort: the event says what failed, the rotation stands
                problem = str(error)[:200]
            await self.events.record(token, KIND, "RestartFailed", f"could not restart {what}: {problem}", warning=True)
