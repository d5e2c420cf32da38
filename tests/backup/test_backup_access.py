"""Who may back up and restore: the operator at the host's terminal (local operations), never a token holder
through role-based access — not even an administrator with MFA — and the audit log names who took a backup."""

from __future__ import annotations

from pathlib import Path

import pytest
from backup_support import OPERATOR, create_backup, recovery, write

from knhk.app.access import RoleBasedAccess
from knhk.app.application import Application
from knhk.app.backup import Recovery
from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import ForbiddenError
from knhk.identity.rbac import Principal
from knhk.ledger import receipts

ADMIN = Principal(identity="urn:test#root", issuer="urn:test", subject="root", roles=frozenset({"administrator"}),
                  mfa=True)


def test_backups_are_refused_to_role_based_access_and_audited_by_operator(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", db_pool_min=1, db_pool_max=2)
    with Runtime.open(settings) as rt:
        write(rt, "a", 10)
        with pytest.raises(ForbiddenError, match="local operators only"):
            Application(rt, RoleBasedAccess()).create_backup(ADMIN)
        assert not settings.resolved_backup_dir.exists() or not any(settings.resolved_backup_dir.iterdir())
        denied = rt.audit.events(action="authz.denied")
        assert [e.resource for e in denied] == ["operation/backups.create"]

        manifest = create_backup(rt)
        created = rt.audit.events(action=receipts.BACKUP_CREATED)
        assert len(created) == 1
        assert created[0].resource == f"backup/{manifest.id}"
        assert created[0].metadata["manifest_sha256"] == manifest.digest()
        assert created[0].actor == rt.subjects.pseudonym(OPERATOR.identity)

    rba = Recovery(settings, RoleBasedAccess())
    with pytest.raises(ForbiddenError, match="local operators only"):
        rba.list_backups(ADMIN)
    with pytest.raises(ForbiddenError, match="local operators only"):
        rba.verify_backup(ADMIN, manifest.id)
    with pytest.raises(ForbiddenError, match="local operators only"):
        rba.restore_backup(ADMIN, manifest.id, force=True)
    assert [row["id"] for row in recovery(settings).list_backups(OPERATOR)] == [manifest.id]
