"""From STAC items to a forest-loss table in a few lines (tests/integration/test_docs_example.py).

Two Landsat-7 dates over Chiapas, Mexico, from geoseg's embedded catalog, loaded
lazily with odc-stac, segmented with the shipped ``forest-landsat`` model, then
compared per country. Run it as a script (``python docs/example_forest_loss.py``)
or paste it into a notebook: no Dask cluster is needed, the default scheduler
computes the arrays.
"""

import odc.stac

import geoseg

model = geoseg.open_model("forest")  # reads blue, green, red, nir
dates = [geoseg.stac_item(f"chiapas-landsat7-{day}") for day in ("19991118", "20020416")]
before, after = (
    geoseg.segment(odc.stac.load([item], bands=model.card.band_names, chunks={}), model)
    for item in dates
)
tables = geoseg.change(before, after, "naturalearth-countries", region_id_field="iso_a3")
seen = tables.regions[tables.regions["region_area_ha"] > 0]  # the countries the scene covers
print(seen[["region_id", "region_area_ha", "loss_ha", "gain_ha", "net_change_ha"]])
print(geoseg.vectorize(after).groupby("class_name")["area_ha"].sum())
