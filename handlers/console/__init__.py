"""The managers' and staff's web console at ``/console/``: login from WeCom, one page per
section (experience, service, sales, projectors), charts, drill-downs and exports."""
