//! `sluice migrate` and `sluice admin …`.

use sluice_store::tenants::{self, PgTenantStore, TenantStore};

use super::connect::redact;
use crate::cli::{AdminCommand, Connections, KeyCommand, TenantCommand};
use crate::runtime::say;

pub async fn migrate(conn: Connections) -> anyhow::Result<()> {
    let pool = super::connect::pg_pool(&conn).await?;
    tenants::migrate(&pool).await?;
    say(&format!(
        "database {} is migrated",
        redact(&conn.database_url)
    ));
    Ok(())
}

pub async fn run(command: AdminCommand, conn: Connections) -> anyhow::Result<()> {
    let store = super::connect::postgres(&conn).await?;
    match command {
        AdminCommand::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let tenant = store.create_tenant(&name).await?;
            say(&format!("created tenant {} ({})", tenant.name, tenant.id));
        }
        AdminCommand::Key {
            command: KeyCommand::Create { tenant, name },
        } => create_key(&store, &tenant, &name).await?,
    }
    Ok(())
}

async fn create_key(store: &PgTenantStore, tenant: &str, name: &str) -> anyhow::Result<()> {
    let key = store.create_key(tenant, name).await?;
    say(&format!(
        "created key {:?} ({}) for tenant {tenant}; it is shown once, below:",
        key.record.name, key.record.display_prefix
    ));
    say(&key.key);
    Ok(())
}
