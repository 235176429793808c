"""The iSCSI target's configuration RPCs from Python on a seeded World: SPDK's iscsi_* methods
with the parameters SPDK's scripts/rpc.py sends (flags given as false too), the result shapes,
errors that name the bad value, a target node's SCSI device and claimed bdevs, and save_config
replayed into a new World giving the same target."""

import pytest

import strata
from strata import RpcError
from strata.errors import INTERNAL_ERROR, INVALID_PARAMS

GETTERS = ("iscsi_get_options", "iscsi_get_portal_groups", "iscsi_get_initiator_groups",
           "iscsi_get_auth_groups", "iscsi_get_target_nodes", "scsi_get_devices")


def configure(w):
    for name in ("Malloc0", "Malloc1", "Malloc2"):
        w.rpc("bdev_malloc_create", name=name, num_blocks=2048, block_size=512)
    assert w.rpc("iscsi_set_options", node_base="iqn.2016-06.io.spdk", max_queue_depth=128,
                 first_burst_length=65536, immediate_data=True, allow_duplicated_isid=False,
                 disable_chap=False, require_chap=False, mutual_chap=False, chap_group=0) is True
    assert w.rpc("iscsi_create_auth_group", tag=1,
                 secrets=[{"user": "initiator", "secret": "s3cr3t-one"},
                          {"user": "mutual", "secret": "s3cr3t-two", "muser": "target",
                           "msecret": "s3cr3t-three"}]) is True
    assert w.rpc("iscsi_create_portal_group", tag=1,
                 portals=[{"host": "127.0.0.1", "port": "3260"}], private=False,
                 wait=False) is True
    assert w.rpc("iscsi_create_initiator_group", tag=2, initiators=["ANY"],
                 netmasks=["127.0.0.1/32", "[::1]/128"]) is True
    assert w.rpc("iscsi_create_target_node", name="disk1", alias_name="Data Disk1",
                 pg_ig_maps=[{"pg_tag": 1, "ig_tag": 2}],
                 luns=[{"bdev_name": "Malloc0", "lun_id": 0}], queue_depth=64,
                 disable_chap=False, require_chap=True, mutual_chap=False, chap_group=1,
                 header_digest=False, data_digest=False) is True
    assert w.rpc("iscsi_target_node_add_lun", name="iqn.2016-06.io.spdk:disk1",
                 bdev_name="Malloc1", lun_id=1) is True
    assert w.rpc("iscsi_set_discovery_auth", disable_chap=False, require_chap=True,
                 mutual_chap=False, chap_group=1) is True


def test_configure_and_inspect(world):
    configure(world)
    opts = world.rpc("iscsi_get_options")
    assert opts["max_queue_depth"] == 128 and opts["first_burst_length"] == 65536
    assert opts["require_chap"] is True and opts["chap_group"] == 1
    node, = world.rpc("iscsi_get_target_nodes")
    assert node["name"] == "iqn.2016-06.io.spdk:disk1"
    assert node["alias_name"] == "Data Disk1"
    assert node["luns"] == [{"bdev_name": "Malloc0", "lun_id": 0},
                            {"bdev_name": "Malloc1", "lun_id": 1}]
    assert node["pg_ig_maps"] == [{"pg_tag": 1, "ig_tag": 2}]
    assert (node["require_chap"], node["chap_group"], node["queue_depth"]) == (True, 1, 64)
    assert world.rpc("scsi_get_devices") == [{"id": 0, "device_name": node["name"]}]
    assert world.rpc("bdev_get_bdevs", name="Malloc0")[0]["claimed"] is True
    assert world.rpc("iscsi_get_portal_groups") == [
        {"tag": 1, "portals": [{"host": "127.0.0.1", "port": "3260"}], "private": False}]
    assert world.rpc("iscsi_get_auth_groups")[0]["secrets"][1] == {
        "user": "mutual", "secret": "s3cr3t-two", "muser": "target", "msecret": "s3cr3t-three"}
    assert world.rpc("iscsi_get_connections") == []


def test_errors_name_the_bad_value(world):
    configure(world)
    cases = [
        (INVALID_PARAMS, "iscsi_create_portal_group",
         dict(tag=2, portals=[{"host": "127.0.0.1", "port": "3260"}]), "already exists"),
        (INVALID_PARAMS, "iscsi_create_portal_group",
         dict(tag=3, portals=[{"host": "127.0.0.1", "port": "99999"}]), "'99999'"),
        (INVALID_PARAMS, "iscsi_create_initiator_group",
         dict(tag=3, initiators=["ANY"], netmasks=["10.0.0.0/33"]), "'10.0.0.0/33'"),
        (INVALID_PARAMS, "iscsi_create_target_node",
         dict(name="disk2", pg_ig_maps=[{"pg_tag": 1, "ig_tag": 2}],
              luns=[{"bdev_name": "Malloc0", "lun_id": 0}], queue_depth=64),
         "Malloc0"),  # claimed by disk1
        (INVALID_PARAMS, "iscsi_create_target_node",
         dict(name="disk/2", pg_ig_maps=[{"pg_tag": 1, "ig_tag": 2}],
              luns=[{"bdev_name": "Malloc2", "lun_id": 0}], queue_depth=64),
         "not a valid iSCSI name"),
        (INVALID_PARAMS, "iscsi_create_target_node",
         dict(name="disk2", pg_ig_maps=[{"pg_tag": 1, "ig_tag": 2}],
              luns=[{"bdev_name": "Malloc2", "lun_id": 0}], queue_depth=64,
              disable_chap=True, require_chap=True), "disable_chap"),
        (INVALID_PARAMS, "iscsi_target_node_add_lun",
         dict(name="disk9", bdev_name="Malloc2"), "disk9 not found"),
        (INTERNAL_ERROR, "iscsi_delete_portal_group", dict(tag=1), "mapped by target node"),
        (INTERNAL_ERROR, "iscsi_delete_auth_group", dict(tag=1), "discovery"),
        (INTERNAL_ERROR, "iscsi_set_options", dict(max_sessions=4), "no portal group"),
    ]
    for code, method, params, text in cases:
        with pytest.raises(RpcError) as e:
            world.rpc(method, **params)
        assert e.value.code == code, (method, e.value)
        assert text in e.value.message, (method, e.value)
    # The failures changed nothing.
    assert len(world.rpc("iscsi_get_target_nodes")) == 1
    assert len(world.rpc("scsi_get_devices")) == 1
    assert world.rpc("bdev_get_bdevs", name="Malloc2")[0]["claimed"] is False


def test_delete_releases_the_bdevs(world):
    configure(world)
    assert world.rpc("iscsi_delete_target_node", name="iqn.2016-06.io.spdk:disk1") is True
    assert world.rpc("scsi_get_devices") == []
    assert world.rpc("bdev_get_bdevs", name="Malloc0")[0]["claimed"] is False
    assert world.rpc("iscsi_delete_initiator_group", tag=2) is True
    assert world.rpc("iscsi_delete_portal_group", tag=1) is True
    assert world.rpc("iscsi_set_discovery_auth") is True
    assert world.rpc("iscsi_delete_auth_group", tag=1) is True
    assert world.rpc("bdev_malloc_delete", name="Malloc0") is True


def test_save_config_round_trip(seed):
    with strata.World(seed=seed) as w:
        configure(w)
        assert w.rpc("iscsi_create_portal_group", tag=5,
                     portals=[{"host": "0.0.0.0", "port": "3270"}], private=True,
                     wait=True) is True
        saved = w.rpc("save_config")
        state = {m: w.rpc(m) for m in GETTERS}
    iscsi, = [s["config"] for s in saved["subsystems"] if s["subsystem"] == "iscsi"]
    assert [e["method"] for e in iscsi] == [
        "iscsi_set_options", "iscsi_create_auth_group", "iscsi_create_portal_group",
        "iscsi_create_portal_group", "iscsi_create_initiator_group", "iscsi_create_target_node"]
    with strata.World(seed=seed, config=saved) as w:
        assert {m: w.rpc(m) for m in GETTERS} == state
        again = w.rpc("save_config")
    assert [s["config"] for s in again["subsystems"] if s["subsystem"] == "iscsi"] == [iscsi]
