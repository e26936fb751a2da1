"""``axion stage3 prepare``: real Sentinel-1/Sentinel-2 data in, tiles out.

Sources (:mod:`.scene` for co-registered GeoTIFF scenes, :mod:`.bigearthnet` for
BigEarthNet-MM patch folders and the packaged demo) yield tiles; :mod:`.run`
stages them, assigns splits by spatial block (:mod:`.splits`) and commits them
into ``<output-dir>/{train,val,test}/`` (:mod:`.output`).
"""
