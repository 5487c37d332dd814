//! The form counters on `/metrics`, read from the store at scrape time in a read-only
//! transaction: submissions and confirmations per form, refusals per form and reason.

use crate::AppState;

/// The form counters for `/metrics`.
pub(crate) async fn render_metrics(state: &AppState, out: &mut String) {
    let counts = async {
        let mut tx = state.store.begin_read().await?;
        let c = tx.form_counts().await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>(c)
    }
    .await;
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("form metrics: {e}");
            return;
        }
    };
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    out.push_str("# HELP nurture_form_submissions_total Form submissions stored, per form.\n# TYPE nurture_form_submissions_total counter\n");
    for c in &counts {
        out.push_str(&format!(
            "nurture_form_submissions_total{{form=\"{}\"}} {}\n",
            label(&c.form),
            c.submissions
        ));
    }
    out.push_str("# HELP nurture_form_confirmations_total Form submissions confirmed, per form.\n# TYPE nurture_form_confirmations_total counter\n");
    for c in &counts {
        out.push_str(&format!(
            "nurture_form_confirmations_total{{form=\"{}\"}} {}\n",
            label(&c.form),
            c.confirmations
        ));
    }
    out.push_str("# HELP nurture_form_rejections_total Form submissions refused, per form and reason.\n# TYPE nurture_form_rejections_total counter\n");
    for c in &counts {
        for (reason, n) in &c.rejections {
            out.push_str(&format!(
                "nurture_form_rejections_total{{form=\"{}\",reason=\"{}\"}} {n}\n",
                label(&c.form),
                label(reason)
            ));
        }
    }
}
