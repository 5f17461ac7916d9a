"""Reports: templates, drafting, signing, the signed PDF, delivery back to the station (see models)."""
