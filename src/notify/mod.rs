//! Notification channels: email over SMTP and webhooks.
