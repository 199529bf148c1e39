"""Kubernetes Events about our objects (core/v1), posted without blocking the reconcile."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from storage_token.api.times import format_time
from storage_token.kube.api import ApiError, Kube, NamespaceTerminating

log = logging.getLogger(__name__)
COMPONENT = "storage-token-operator"


class EventRecorder:
    def __init__(self, kube: Kube, home_namespace: str, component: str = COMPONENT, routine: bool = False) -> None:
        self.kube = kube
        self.home_namespace = home_namespace  # where events about cluster-scoped objects go
        self.component = component
        self.routine = routine  # post routine-success events too (each is one more API write)

    async def record(
        self,
        obj: dict[str, Any],
        kind: str,
        reason: str,
        message: str,
        warning: bool = False,
        routine: bool = False,
    ) -> None:
        """Post an event about `obj`. Messages are built by the operator and never hold key material.

        `routine`: a success that status and metrics already record (posted only when asked for)."""
        if routine and not self.routine:
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or self.home_namespace
        now = format_time(datetime.now(UTC))
        body = {
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": kind,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.kube.create_event(namespace, body)
        except NamespaceTerminating:
            log.debug("event %s for %s/%s dropped: namespace terminating", reason, namespace, meta.get("name"))
        except ApiError as error:  # an event is best effort: never fail the reconcile for it
            log.warning(
                "could not post event %s for %s/%s: %s %s",
                reason,
                namespace,
                meta.get("name"),
                error.status,
                error.reason,
            )
        except OSError as error:
            log.warning("could not post event %s for %s/%s: %s", reason, namespace, meta.get("name"), error)
