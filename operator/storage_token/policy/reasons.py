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
# Why nothing can be issued (Ready=False, no provider call)
PROVIDER_NOT_FOUND = "ProviderNotFound"
PROVIDER_NOT_READY = "ProviderNotReady"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
POLICY_VIOLATION = "PolicyViolation"
INVALID_SPEC = "InvalidSpec"
SECRET_CONFLICT = "SecretConflict"
TEMPLATE_ERROR = "TemplateError"
BACKING_OFF = "BackingOff"
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
