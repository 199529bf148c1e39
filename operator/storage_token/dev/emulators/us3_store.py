"""The US3 emulator's in-memory tokens and the rules of us3-api.md that guard them.

Each action reads its parameters through `Params`, which enforces required
names, the 0-based contiguous `Name.N` lists and rejects parameters the
action does not take (the real API may ignore them; a strict emulator
catches client encoding bugs). Rule violations raise `ApiError(RetCode)`.
Callers hold the emulator's lock around every method.

Projects: every account has a default project (what an absent ProjectId
means, and the one GetProjectList marks IsDefault). DeleteUFileToken requires
ProjectId, Region and TokenId (UCloud's docs and SDKs mark all three
required); a sub-account must name the ProjectId on every action.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_EXPIRE_TIME = 4102416000
DEFAULT_LIFETIME = 86400
OPS = frozenset(
    {
        "TOKEN_ALLOW_NONE",
        "TOKEN_ALLOW_READ",
        "TOKEN_ALLOW_WRITE",
        "TOKEN_ALLOW_DELETE",
        "TOKEN_ALLOW_LIST",
        "TOKEN_ALLOW_IOP",
        "TOKEN_DENY_UPDATE",
    }
)
_LIST_NAME = re.compile(r"^(?P<name>[A-Za-z]+)\.(?P<index>\d+)$")


class ApiError(Exception):
    """An answer with a non-zero RetCode."""

    def __init__(self, retcode: int, message: str) -> None:
        super().__init__(message)
        self.retcode = retcode
        self.message = message


class Params:
    """An action's form parameters; `finish()` rejects any the action didn't read."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = dict(raw)
        self._read: set[str] = set()

    def scalar(self, name: str, *, required: bool = False) -> str | None:
        self._read.add(name)
        value = self._raw.get(name)
        if required and not value:
            raise ApiError(15002, f"Missing params: {name}")
        return value

    def integer(self, name: str) -> int | None:
        value = self.scalar(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise ApiError(15017, f"Params [{name}] not valid: not an integer") from None

    def strings(self, name: str) -> list[str]:
        indexed: dict[int, str] = {}
        for key, value in self._raw.items():
            match = _LIST_NAME.match(key)
            if match and match["name"] == name:
                self._read.add(key)
                indexed[int(match["index"])] = value
        if sorted(indexed) != list(range(len(indexed))):
            raise ApiError(15017, f"Params [{name}.N] not valid: indexes must be 0, 1, 2, ...")
        return [indexed[i] for i in range(len(indexed))]

    def finish(self) -> None:
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            raise ApiError(15017, f"Params [{unknown[0]}] not valid: not a parameter of this action")


@dataclass
class StoredToken:
    account: str  # the account PublicKey that owns it
    project: str  # the ProjectId (an absent one was resolved to the default project)
    region: str
    token_id: str
    token_name: str
    public_key: str
    private_key: str = field(repr=False)
    ops: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)
    expire_time: int = 0
    create_time: int = 0
    modify_time: int = 0
    black_ips: list[str] = field(default_factory=list)
    white_ips: list[str] = field(default_factory=list)

    def payload(self, *, full: bool) -> dict[str, Any]:
        """UFileTokenSet; the private key only when `full`."""
        body: dict[str, Any] = {
            "Region": self.region,
            "TokenId": self.token_id,
            "TokenName": self.token_name,
            "PublicKey": self.public_key,
            "AllowedOps": list(self.ops),
            "AllowedPrefixes": list(self.prefixes),
            "AllowedBuckets": list(self.buckets),
            "ExpireTime": self.expire_time,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
            "BlackIPList": list(self.black_ips),
            "WhiteIPList": list(self.white_ips),
        }
        if full:
            body["PrivateKey"] = self.private_key
        return body

    def summary(self, now: float) -> dict[str, Any]:
        """For the test-control state page: everything but the private key."""
        return {
            **self.payload(full=False),
            "Account": self.account,
            "ProjectId": self.project,
            "Expired": self.expired(now),
        }

    def expired(self, now: float) -> bool:
        return self.expire_time <= now


class TokenStore:
    """Tokens of every account, keyed by TokenId, in creation order."""

    def __init__(
        self,
        buckets: Mapping[str, str],
        *,
        token_limit: int,
        default_region: str,
        projects: frozenset[str] | None,
        now: Callable[[], float],
        default_project: str = "org-default",
        sub_accounts: frozenset[str] = frozenset(),
    ) -> None:
        self.buckets = dict(buckets)  # bucket name -> region
        self.token_limit = token_limit
        self.default_region = default_region
        self.projects = projects  # None: every ProjectId exists
        self.default_project = default_project
        self.sub_accounts = sub_accounts  # PublicKeys that must name the ProjectId on every action
        self.regions = frozenset(self.buckets.values()) | {default_region}
        self.tokens: dict[str, StoredToken] = {}
        self.issued_secrets: list[str] = []  # every private key ever handed out (leak scans look for them)
        self.journal: list[dict[str, Any]] = []  # every token created and deleted, with times (never the key)
        self._now = now

    # -- actions ------------------------------------------------------------
    def create(self, account: str, params: Params) -> dict[str, Any]:
        region_param = params.scalar("Region")
        project = self._project(account, params)
        name = params.scalar("TokenName", required=True) or ""
        ops = params.strings("AllowedOps") or ["TOKEN_ALLOW_NONE"]
        prefixes = params.strings("AllowedPrefixes") or ["*"]
        buckets = params.strings("AllowedBuckets") or ["*"]
        expire_time = params.integer("ExpireTime")
        black_ips = params.strings("BlackIPList")
        white_ips = params.strings("WhiteIPList")
        params.finish()

        for op in ops:
            if op not in OPS:
                raise ApiError(15017, f"Params [AllowedOps] not valid: unknown op {op!r}")
        for address in black_ips + white_ips:
            _check_ip(address)
        region = self._token_region(region_param, buckets)
        now = int(self._now())
        if expire_time is None:
            expire_time = now + DEFAULT_LIFETIME
        if expire_time <= now:
            raise ApiError(15018, "Params [ExpireTime] out of range: in the past")
        if expire_time > MAX_EXPIRE_TIME:
            raise ApiError(15018, f"Params [ExpireTime] out of range: later than {MAX_EXPIRE_TIME}")
        if sum(1 for t in self.tokens.values() if t.account == account) >= self.token_limit:
            raise ApiError(15038, f"token count limit ({self.token_limit}) reached: delete unused tokens")

        token = StoredToken(
            account=account,
            project=project,
            region=region,
            token_id=f"ufiletoken-{uuid.uuid4().hex[:16]}",
            token_name=name,
            public_key=f"TOKEN_{uuid.uuid4()}",
            private_key=str(uuid.uuid4()),
            ops=ops,
            prefixes=prefixes,
            buckets=buckets,
            expire_time=expire_time,
            create_time=now,
            modify_time=now,
            black_ips=black_ips,
            white_ips=white_ips,
        )
        self.issued_secrets.append(token.private_key)
        self.tokens[token.token_id] = token
        self.journal.append(
            {
                "at": self._now(),
                "event": "created",
                "keyId": token.token_id,
                "keyName": token.token_name,
                "accessKeyId": token.public_key,
                "expires": float(token.expire_time),
            }
        )
        return {"TokenId": token.token_id, "UFileTokenSet": token.payload(full=True)}

    def describe(self, account: str, params: Params) -> dict[str, Any]:
        region = params.scalar("Region")
        project = self._project(account, params)
        token_id = params.scalar("TokenId")
        token_name = params.scalar("TokenName")
        # "0 shows partial token info; absent or any other value shows it all" (describe_ufile_token.md).
        display = params.integer("Display")
        params.finish()

        found = [
            t
            for t in self.tokens.values()
            if t.account == account
            and t.project == project
            and (not region or t.region == region)
            and (not token_id or t.token_id == token_id)
            and (not token_name or t.token_name == token_name)
        ]
        if (token_id or token_name) and not found:
            raise ApiError(15040, f"token {token_id or token_name} not found")
        return {"DataSet": [t.payload(full=display != 0) for t in found]}

    def projects_of(self, account: str, params: Params) -> dict[str, Any]:
        """GetProjectList: the default project, then every other known one."""
        params.scalar("IsFinance")
        # UAccount is not regional, but the SDKs send their configured Region and ProjectId on every call.
        params.scalar("Region")
        params.scalar("ProjectId")
        params.finish()
        others = sorted((self.projects or frozenset()) - {self.default_project})
        rows = [(self.default_project, "Default", True)] + [(p, p, False) for p in others]
        project_set = [
            {
                "ProjectId": project,
                "ProjectName": name,
                "ParentId": "",
                "ParentName": "",
                "CreateTime": 1500000000,
                "IsDefault": default,
                "ResourceCount": sum(1 for t in self.tokens.values() if t.account == account and t.project == project),
                "MemberCount": 1,
            }
            for project, name, default in rows
        ]
        return {"ProjectCount": len(project_set), "ProjectSet": project_set}

    def delete(self, account: str, params: Params) -> dict[str, Any]:
        # delete_ufile_token.md and both SDKs mark all three required (ProjectId too, unlike the other actions).
        region = params.scalar("Region", required=True)
        project = self._project(account, params, required=True)
        token_id = params.scalar("TokenId", required=True) or ""
        params.finish()

        token = self.tokens.get(token_id)
        if token is None or token.account != account or token.project != project or token.region != region:
            raise ApiError(15040, f"token {token_id} not found")
        del self.tokens[token_id]
        self.journal.append({"at": self._now(), "event": "deleted", "keyId": token_id, "keyName": token.token_name})
        return {}

    # -- rules ------------------------------------------------------------------
    def _project(self, account: str, params: Params, *, required: bool = False) -> str:
        """The ProjectId named, else the default project; sub-accounts ("子帐号必须填写") must name one."""
        project = params.scalar("ProjectId", required=required or account in self.sub_accounts) or ""
        if not project:
            return self.default_project
        known = project == self.default_project or self.projects is None or project in self.projects
        if not known:
            raise ApiError(292, f"project {project} does not exist")
        return project

    def _token_region(self, region_param: str | None, buckets: list[str]) -> str:
        """A token covers buckets of one region; a named bucket must exist."""
        if region_param and region_param not in self.regions:
            raise ApiError(15017, f"Params [Region] not valid: unknown region {region_param!r}")
        regions: dict[str, str] = {}
        for bucket in buckets:
            if bucket == "*":
                continue
            if bucket not in self.buckets:
                raise ApiError(15039, f"bucket {bucket} does not exist")
            home = self.buckets[bucket]
            regions.setdefault(home, bucket)
            if region_param and home != region_param:
                raise ApiError(
                    15017, f"Params [AllowedBuckets] not valid: bucket {bucket} is in {home}, not {region_param}"
                )
        if len(regions) > 1:
            raise ApiError(
                15018, f"Params [AllowedBuckets] out of range: buckets of regions {', '.join(sorted(regions))}"
            )
        return region_param or next(iter(regions), self.default_region)


def _check_ip(address: str) -> None:
    try:
        ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise ApiError(15017, f"Params [IPList] not valid: {address!r} is not an IPv4 or IPv6 address") from None
