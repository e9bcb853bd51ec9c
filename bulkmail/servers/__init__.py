"""What bulkmail serves: :class:`Sandbox`, a local SES/DirectMail emulator (``bulkmail
sandbox``, ``endpoint: sandbox``, and the peer the durability tests inject faults into)."""

from bulkmail.servers.sandbox import (
    SANDBOX_ALIBABA,
    SANDBOX_AWS,
    Accepted,
    Faults,
    Sandbox,
    run_sandbox,
)

__all__ = ["SANDBOX_ALIBABA", "SANDBOX_AWS", "Accepted", "Faults", "Sandbox", "run_sandbox"]
