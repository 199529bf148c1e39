"""When to issue, renew, revoke or back off: pure checks over a gathered `PolicyInput`.

Imports neither kopf, kubernetes nor httpx; time comes in through the input.
"""
