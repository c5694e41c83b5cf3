"""Read models: the queries behind reports, dashboards and admin screens, by what they show."""
