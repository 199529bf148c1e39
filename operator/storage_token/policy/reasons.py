"""Reasons: condition reasons and event reasons, one vocabulary."""

from __future__ import annotations

# Ready=True
ISSUED = "Issued"
# Why a key is (re-)issued
FIRST_ISSUE = "FirstIssue"
RECOVERING_INTENT = "RecoveringIntent"
SPEC_CHANGED = "SpecChanged"
SECRET_MISSING = "SecretMissing"
SECRET_MODIFIED = "SecretModified"
KEY_EXPIRED = "KeyExpired"
KEY_REVOKED_AT_PROVIDER = "KeyRevokedAtProvider"
MANUAL_RENEWAL = "ManualRenewal"
RENEWAL_DUE = "RenewalDue"
# Issuances that are the plan (their events are routine, STO_ROUTINE_EVENTS); any other reason is a repair.
ROUTINE_ISSUES = frozenset({FIRST_ISSUE, RENEWAL_DUE, MANUAL_RENEWAL})
# Why nothing can be issued (Ready=False, no provider call)
PROVIDER_NOT_FOUND = "ProviderNotFound"
PROVIDER_NOT_READY = "ProviderNotReady"
PROVIDER_DELETED = "ProviderDeleted"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
POLICY_VIOLATION = "PolicyViolation"
INVALID_SPEC = "InvalidSpec"
SECRET_CONFLICT = "SecretConflict"
TEMPLATE_ERROR = "TemplateError"
BACKING_OFF = "BackingOff"
TOO_MANY_LIVE_KEYS = "TooManyLiveKeys"  # policy.maxLiveKeys: the next key waits for a revocation
RENEWAL_RATE_LIMITED = "RenewalRateLimited"  # policy.minManualRenewInterval: the renew annotation waits
INVALID_RENEWAL_WINDOW = "InvalidRenewalWindow"  # renewalWindows name an unknown time zone (the key stays)
# Provider outcomes
ISSUE_FAILED = "IssueFailed"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
CREDENTIALS_INVALID = "CredentialsInvalid"
PERMISSION_DENIED = "PermissionDenied"
QUOTA_EXCEEDED = "QuotaExceeded"
REJECTED_BY_PROVIDER = "RejectedByProvider"
REVOKED = "Revoked"
REVOKE_FAILED = "RevokeFailed"
# Provider objects
CREDENTIALS_VERIFIED = "CredentialsVerified"
CREDENTIALS_SECRET_MISSING = "CredentialsSecretMissing"
REVOKING_KEYS = "RevokingKeys"  # deletion waits for tokens to revoke through this provider

# Re-issues whose replaced key nothing can be using any more: revoked at once, without a grace period.
DEAD_KEY = frozenset({KEY_EXPIRED, KEY_REVOKED_AT_PROVIDER})
# Blockers under which the token may no longer hold its current key: it is revoked after the grace period.
REVOKE_CURRENT_KEY = frozenset(
    {POLICY_VIOLATION, NAMESPACE_NOT_ALLOWED, PROVIDER_NOT_FOUND, PROVIDER_DELETED, INVALID_SPEC, TEMPLATE_ERROR}
)

# Renewals held back by the provider's limits against minting (the current key stays; Issuing says why).
MINTING_LIMITS = frozenset({TOO_MANY_LIVE_KEYS, RENEWAL_RATE_LIMITED})
