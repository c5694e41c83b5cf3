"""The e-mail channel: invitations sent through SMTP."""
