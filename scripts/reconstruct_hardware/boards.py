"""The reconstructed boards. Every name here is a public fact (belabox-image.md section
numbers in the comments); every number is invented."""

from __future__ import annotations

from scripts.reconstruct_hardware.board import Board, Hwmon, Policy, Zone
from scripts.reconstruct_hardware.tree import Disk, Iface, Tree, io_stat, traffic

GiB_SECTORS = 2 * 1024 * 1024


def _lo(rx: int) -> Iface:
    return Iface("lo", "devices/virtual/net/lo", None, "00:00:00:00:00:00", operstate="unknown",
                 mtu=65536, speed=None, duplex=None, ifindex=1, iftype=772, stats=traffic(rx, rx))


def _zram(n: int, disksize: int, orig: int, minor: int) -> Disk:
    # §2.5: zram is memory (Armbian ramlog /var/log, Jetson nvzramconfig swap).
    return Disk(f"zram{n}", f"devices/virtual/block/zram{n}", 254, minor, disksize // 512,
                io_stat(300 + n, 9000 + n * 10), extra={
                    "disksize": disksize,
                    "mm_stat": f"{orig} {orig // 3} {orig // 3 + 81920} 0 {orig // 3 + 98304} 12 0 3 0",
                })


def _loop(n: int) -> Disk:
    return Disk(f"loop{n}", f"devices/virtual/block/loop{n}", 7, n, 0, io_stat(0, 0))


def _modem_wwan(usb: str, ifindex: int) -> Iface:
    # §1.7: Quectel EC25 on qmi_wwan, DEVTYPE=wwan, raw-IP (no MAC semantics, speed unknown).
    return Iface("wwan0", f"{usb}/net/wwan0", usb, "00:00:00:00:00:00", mtu=1500, speed=None,
                 duplex=None, devtype="wwan", ifindex=ifindex, iftype=519,
                 stats=traffic(3_912_000_451, 27_004_118_203, errors=2, drops=14))


RK3588_POLICIES = [Policy([0, 1, 2, 3], 408000, 1800000, 1200000),
                   Policy([4, 5], 408000, 2400000, 2208000),
                   Policy([6, 7], 408000, 2400000, 1608000, scaling_max_khz=1800000)]


def orangepi5plus() -> Board:
    """Orange Pi 5 Plus, RK3588 vendor BSP kernel (§2.2 zone names, soc-thermal first)."""
    zones = [Zone("soc-thermal", 51846, hwmon=True), Zone("bigcore0-thermal", 52769),
             Zone("bigcore1-thermal", 52769), Zone("littlecore-thermal", 51846),
             Zone("center-thermal", 50923), Zone("gpu-thermal", 50000, hwmon=True),
             Zone("npu-thermal", 50923)]
    emmc = "devices/platform/fe2e0000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
    nvme = "devices/platform/fe150000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/nvme/nvme0/nvme0n1"
    wwan_usb = "devices/platform/fc400000.usb/xhci-hcd.8.auto/usb5/5-1/5-1:1.4"
    hilink_usb = "devices/platform/fc000000.usb/xhci-hcd.7.auto/usb3/3-1/3-1:1.0"
    phone_usb = "devices/platform/fc880000.usb/usb1/1-1/1-1:1.0"
    nic0 = "devices/platform/fe170000.pcie/pci0003:30/0003:30:00.0/0003:31:00.0"
    nic1 = "devices/platform/fe190000.pcie/pci0004:40/0004:40:00.0/0004:41:00.0"
    return Board(
        id="rk3588-orangepi5plus",
        compatible=["rockchip,rk3588-orangepi-5-plus", "rockchip,rk3588"],
        model="Orange Pi 5 Plus", cores=8, uptime=261_754.31, busy_percent=23.0,
        policies=RK3588_POLICIES, zones=zones,
        cooling=[("cpufreq-cpu0", 0, 9), ("cpufreq-cpu4", 1, 10), ("cpufreq-cpu6", 3, 10),
                 ("devfreq-fb000000.gpu", 0, 4), ("pwm-fan", 2, 4)],
        hwmons=[Hwmon("devices/platform/pwm-fan/hwmon/hwmon0", "pwmfan", {"pwm1": 153, "pwm1_enable": 1},
                      device="devices/platform/pwm-fan")],
        ifaces=[
            _lo(88_120_334),
            Iface("enP3p49s0", f"{nic0}/net/enP3p49s0", nic0, "c0:74:2b:fe:3a:11", speed=2500, ifindex=2,
                  stats=traffic(9_771_230_119, 1_220_448_190)),
            Iface("enP4p65s0", f"{nic1}/net/enP4p65s0", nic1, "c0:74:2b:fe:3a:12", operstate="down",
                  carrier=0, speed=None, duplex="unknown", ifindex=3, stats=traffic(0, 0)),
            _modem_wwan(wwan_usb, 5),
            # §1.7: Huawei E3372h HiLink on cdc_ether, renamed by MAC (73-usb-net-by-mac.link).
            Iface("enx0c5b8f279a64", f"{hilink_usb}/net/enx0c5b8f279a64", hilink_usb, "0c:5b:8f:27:9a:64",
                  speed=425, duplex="half", ifindex=6, stats=traffic(1_408_772_010, 18_910_004_332)),
            # Phone tethering over rndis_host: usbN on the host side, a real USB device.
            Iface("usb0", f"{phone_usb}/net/usb0", phone_usb, "9a:31:7c:05:d2:40", speed=None, duplex=None,
                  ifindex=7, stats=traffic(602_112_887, 7_433_018_100)),
            Iface("docker0", "devices/virtual/net/docker0", None, "02:42:6b:1a:0c:55", operstate="down",
                  carrier=0, speed=None, duplex=None, ifindex=4, bridge=True, devtype="bridge"),
        ],
        disks=[
            Disk("mmcblk0", emmc, 179, 0, 116 * GiB_SECTORS, io_stat(84_113, 402_761, discards=210, flushes=9_113),
                 partitions=[("mmcblk0p1", 1, 1_048_576, io_stat(510, 20)),
                             ("mmcblk0p2", 2, 116 * GiB_SECTORS - 1_064_960, io_stat(83_400, 402_700))]),
            # The kernel nests eMMC hardware partitions under the user area's gendisk
            # (mmc_blk_alloc_part gives them disk_to_dev(md->disk) as parent).
            Disk("mmcblk0boot0", emmc + "/mmcblk0boot0", 179, 32, 8192, io_stat(12, 0)),
            Disk("mmcblk0boot1", emmc + "/mmcblk0boot1", 179, 64, 8192, io_stat(12, 0)),
            Disk("nvme0n1", nvme, 259, 0, 465 * GiB_SECTORS, io_stat(1_220_044, 3_310_927, discards=1200,
                                                                      flushes=88_007, in_flight=1),
                 partitions=[("nvme0n1p1", 1, 465 * GiB_SECTORS - 2048, io_stat(1_220_000, 3_310_900))]),
            Disk("mtdblock0", "devices/platform/fe2b0000.spi/spi_master/spi4/spi4.0/mtd/mtd0/mtdblock0",
                 31, 0, 32768, io_stat(40, 0)),
            _zram(0, 50 * 1024 * 1024, 21_334_016, 0),
            _loop(0),
        ],
        mounts=[(22, 1, "179:2", "/", "rw,noatime", "ext4", "/dev/mmcblk0p2"),
                (23, 22, "0:21", "/proc", "rw,nosuid,nodev,noexec,relatime", "proc", "proc"),
                (24, 22, "0:22", "/sys", "rw,nosuid,nodev,noexec,relatime", "sysfs", "sysfs"),
                (25, 22, "0:5", "/dev", "rw,nosuid,relatime", "devtmpfs", "udev"),
                (26, 22, "0:24", "/run", "rw,nosuid,nodev,noexec,relatime", "tmpfs", "tmpfs"),
                (27, 22, "179:1", "/boot", "rw,noatime", "ext4", "/dev/mmcblk0p1"),
                (28, 22, "259:1", "/data", "rw,noatime", "ext4", "/dev/nvme0n1p1"),
                (29, 22, "254:0", "/var/log", "rw,nosuid,nodev,noexec,noatime", "ext4", "/dev/zram0"),
                (30, 22, "0:26", "/tmp", "rw,nosuid,nodev", "tmpfs", "tmpfs")],
        mem_total_kb=16_146_664, swap_kb=0,
    )


def rock5b() -> Board:
    """Radxa Rock 5B(+), mainline kernel: package-thermal and bigcore2 (§2.2); NVMe or SD as
    main storage since the eMMC pad is usually unpopulated (§1.1)."""
    zones = [Zone("package-thermal", 47077, hwmon=True), Zone("bigcore0-thermal", 47999),
             Zone("bigcore2-thermal", 48923), Zone("littlecore-thermal", 47077),
             Zone("center-thermal", 46153), Zone("gpu-thermal", 46153), Zone("npu-thermal", 47077)]
    nvme = "devices/platform/a41000000.pcie/pci0004:40/0004:40:00.0/0004:41:00.0/nvme/nvme0/nvme0n1"
    sd = "devices/platform/fe2c0000.mmc/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1"
    nic = "devices/platform/a40c00000.pcie/pci0003:30/0003:30:00.0/0003:31:00.0"
    wwan_usb = "devices/platform/usb@fc400000/xhci-hcd.2.auto/usb6/6-1/6-1:1.4"
    return Board(
        id="rk3588-rock5b",
        compatible=["radxa,rock-5b-plus", "rockchip,rk3588"],
        model="Radxa ROCK 5B+", cores=8, uptime=9_014.87, busy_percent=41.0,
        policies=RK3588_POLICIES, zones=zones,
        cooling=[("pwm-fan", 1, 4), ("cpufreq-cpu0", 0, 9), ("cpufreq-cpu4", 0, 10), ("cpufreq-cpu6", 0, 10)],
        hwmons=[Hwmon("devices/platform/pwm-fan/hwmon/hwmon0", "pwmfan", {"pwm1": 72, "pwm1_enable": 2},
                      device="devices/platform/pwm-fan"),
                Hwmon("devices/platform/a41000000.pcie/pci0004:40/0004:40:00.0/0004:41:00.0/nvme/nvme0/hwmon1",
                      "nvme", {"temp1_input": 44850, "temp1_label": "Composite", "temp1_max": 84850,
                               "temp1_min": -273150, "temp1_crit": 84850, "temp1_alarm": 0},
                      device="devices/platform/a41000000.pcie/pci0004:40/0004:40:00.0/0004:41:00.0/nvme/nvme0")],
        ifaces=[
            _lo(3_220_118),
            Iface("enP3p49s0", f"{nic}/net/enP3p49s0", nic, "7a:22:0f:b1:3c:90", speed=2500, ifindex=2,
                  stats=traffic(288_900_120, 61_002_448)),
            _modem_wwan(wwan_usb, 3),
        ],
        disks=[
            Disk("nvme0n1", nvme, 259, 0, 238 * GiB_SECTORS, io_stat(402_112, 1_007_331, discards=88, flushes=20_114),
                 partitions=[("nvme0n1p1", 1, 1_048_576, io_stat(300, 4)),
                             ("nvme0n1p2", 2, 238 * GiB_SECTORS - 1_050_624, io_stat(401_800, 1_007_320))]),
            Disk("mmcblk1", sd, 179, 0, 29 * GiB_SECTORS, io_stat(2_210, 0),
                 partitions=[("mmcblk1p1", 1, 29 * GiB_SECTORS - 32768, io_stat(2_200, 0))]),
            Disk("mtdblock0", "devices/platform/fe2b0000.spi/spi_master/spi4/spi4.0/mtd/mtd0/mtdblock0",
                 31, 0, 32768, io_stat(40, 0)),
            _loop(0), _loop(1),
        ],
        mounts=[(22, 1, "259:2", "/", "rw,relatime", "ext4", "/dev/nvme0n1p2"),
                (23, 22, "0:21", "/proc", "rw,nosuid,nodev,noexec,relatime", "proc", "proc"),
                (24, 22, "0:22", "/sys", "rw,nosuid,nodev,noexec,relatime", "sysfs", "sysfs"),
                (25, 22, "259:1", "/boot/firmware", "rw,relatime", "vfat", "/dev/nvme0n1p1"),
                (26, 22, "0:24", "/run", "rw,nosuid,nodev,noexec,relatime", "tmpfs", "tmpfs"),
                (27, 22, "7:0", "/snap/core22/1122", "ro,nodev,relatime", "squashfs", "/dev/loop0"),
                (28, 24, "0:25", "/sys/fs/cgroup", "rw,nosuid,nodev,noexec,relatime", "cgroup2", "cgroup2")],
        mem_total_kb=7_974_112, swap_kb=0, load=(2.31, 2.05, 1.77),
    )


def jetson_nano() -> Board:
    """Jetson Nano dev kit, L4T 32.x (§2.2 zones incl. PMIC-Die's constant 100 °C, §2.4 iio
    INA3221 rails, §2.5 one zram per CPU, §2.6 gadget usb0/rndis0 bridged into l4tbr0)."""
    zones = [Zone("AO-therm", 40500), Zone("CPU-therm", 36500), Zone("GPU-therm", 35000),
             Zone("PLL-therm", 33500), Zone("PMIC-Die", 100000), Zone("thermal-fan-est", 36200)]
    sd = "devices/sdhci-tegra.0/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0"
    nic = "devices/70003000.pcie/pci0000:00/0000:00:02.0/0000:01:00.0"
    gadget = "devices/700d0000.xudc/gadget"
    wwan_usb = "devices/70090000.xusb/usb1/1-2/1-2:1.4"
    ina = "devices/7000c400.i2c/i2c-6/6-0040"

    def iio_rails(t: Tree) -> None:
        iio = f"sys/{ina}/iio:device0"
        rails = (("POM_5V_IN", 5080, 1024, 5199), ("POM_5V_GPU", 5032, 78, 392), ("POM_5V_CPU", 5024, 399, 2005))
        t.attrs(iio, {"name": "ina3221x", "uevent": "DEVTYPE=iio_device\nOF_NAME=ina3221x"})
        for n, (rail, mv, ma, mw) in enumerate(rails):
            t.attrs(iio, {f"rail_name_{n}": rail, f"in_voltage{n}_input": mv, f"in_current{n}_input": ma,
                          f"in_power{n}_input": mw, f"warn_current_limit_{n}": 32760,
                          f"crit_current_limit_{n}": 32760})
        t.attrs(f"sys/{ina}", {"name": "ina3221x", "uevent": "DRIVER=ina3221x\nOF_NAME=ina3221x"})
        t.link("sys/bus/iio/devices/iio:device0", iio)
        t.link("sys/bus/i2c/drivers/ina3221x/6-0040", f"sys/{ina}")

    return Board(
        id="jetson-nano",
        compatible=["nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"],
        model="NVIDIA Jetson Nano Developer Kit", cores=4, uptime=51_222.05, busy_percent=57.0,
        policies=[Policy([0, 1, 2, 3], 102000, 1479000, 1479000)],
        zones=zones,
        cooling=[("Fan", 0, 3), ("CPU-balanced", 0, 13), ("GPU-balanced", 0, 11), ("emergency-balanced", 0, 1)],
        hwmons=[],
        ifaces=[
            _lo(1_008_220),
            Iface("eth0", f"{nic}/net/eth0", nic, "00:04:4b:e5:91:0a", speed=1000, ifindex=2,
                  stats=traffic(55_210_338, 4_410_770_102)),
            # §2.6: USB gadget (device side) and its bridge: not uplinks, left out.
            Iface("usb0", f"{gadget}/net/usb0", gadget, "4a:e7:0a:d4:52:8c", operstate="down", carrier=0,
                  speed=None, duplex=None, ifindex=4, stats=traffic(0, 0)),
            Iface("rndis0", f"{gadget}/net/rndis0", gadget, "4a:e7:0a:d4:52:8a", operstate="down", carrier=0,
                  speed=None, duplex=None, ifindex=5, stats=traffic(0, 0)),
            Iface("l4tbr0", "devices/virtual/net/l4tbr0", None, "4a:e7:0a:d4:52:8a", operstate="down",
                  carrier=0, speed=None, duplex=None, ifindex=3, bridge=True, devtype="bridge"),
            _modem_wwan(wwan_usb, 6),
        ],
        disks=[
            Disk("mmcblk0", sd, 179, 0, 59 * GiB_SECTORS, io_stat(301_118, 98_113, flushes=4_410),
                 partitions=[("mmcblk0p1", 1, 59 * GiB_SECTORS - 28672, io_stat(300_900, 98_100))]),
            _zram(0, 506_208_256, 4096, 0), _zram(1, 506_208_256, 8192, 1),
            _zram(2, 506_208_256, 0, 2), _zram(3, 506_208_256, 12288, 3),
            _loop(0),
        ],
        mounts=[(22, 1, "179:1", "/", "rw,relatime", "ext4", "/dev/mmcblk0p1"),
                (23, 22, "0:4", "/proc", "rw,nosuid,nodev,noexec,relatime", "proc", "proc"),
                (24, 22, "0:17", "/sys", "rw,nosuid,nodev,noexec,relatime", "sysfs", "sysfs"),
                (25, 22, "0:6", "/dev", "rw,relatime", "devtmpfs", "none"),
                (26, 22, "0:20", "/run", "rw,nosuid,noexec,relatime", "tmpfs", "tmpfs"),
                (27, 26, "0:44", "/run/user/1000", "rw,nosuid,nodev,relatime", "tmpfs", "tmpfs")],
        mem_total_kb=4_059_520, swap_kb=4 * 494_344, extra=[iio_rails], load=(3.10, 2.88, 2.41),
    )


def generic() -> Board:
    """An x86-64 mini PC (the CeraLive N100 class): no device tree, DMI, coretemp and nvme hwmon,
    x86 thermal_throttle counters, a 4Kn NVMe namespace (sector counts stay in 512 B units)."""
    nvme = "devices/pci0000:00/0000:00:1d.0/0000:03:00.0/nvme/nvme0/nvme0n1"
    sata = "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
    nic = "devices/pci0000:00/0000:00:1c.0/0000:01:00.0"
    wifi = "devices/pci0000:00/0000:00:1c.1/0000:02:00.0"
    wwan_usb = "devices/pci0000:00/0000:00:14.0/usb2/2-3/2-3:1.4"
    coretemp = {"temp1_input": 47000, "temp1_label": "Package id 0", "temp1_max": 105000, "temp1_crit": 105000,
                "temp1_crit_alarm": 0}
    for n in range(4):
        coretemp.update({f"temp{n + 2}_input": 45000 + 1000 * n, f"temp{n + 2}_label": f"Core {n}",
                         f"temp{n + 2}_max": 105000, f"temp{n + 2}_crit": 105000, f"temp{n + 2}_crit_alarm": 0})
    return Board(
        id="generic",
        compatible=None, model=None, dmi_board="N100 Mini PC", cores=4, uptime=700_411.9, busy_percent=12.0,
        policies=[Policy([n], 700000, 3400000, 800000 + 100000 * n, governor="powersave") for n in range(4)],
        zones=[Zone("acpitz", 27800, hwmon=True), Zone("x86_pkg_temp", 47000)],
        cooling=[("Processor", 0, 3), ("Processor", 0, 3), ("Processor", 0, 3), ("Processor", 0, 3),
                 ("intel_powerclamp", 0, 50)],
        hwmons=[Hwmon("devices/platform/coretemp.0/hwmon/hwmon0", "coretemp", coretemp,
                      device="devices/platform/coretemp.0"),
                Hwmon(f"{nvme.rsplit('/', 1)[0]}/hwmon1", "nvme",
                      {"temp1_input": 38850, "temp1_label": "Composite", "temp1_max": 81850, "temp1_min": -273150,
                       "temp1_crit": 84850, "temp1_alarm": 0, "temp2_input": 38850, "temp2_label": "Sensor 1"},
                      device=nvme.rsplit("/", 1)[0])],
        ifaces=[
            _lo(2_008_110),
            Iface("enp1s0", f"{nic}/net/enp1s0", nic, "a8:a1:59:3e:0c:71", speed=1000, ifindex=2,
                  stats=traffic(8_122_330_101, 912_004_377)),
            Iface("wlp2s0", f"{wifi}/net/wlp2s0", wifi, "f4:26:79:5a:11:e0", operstate="dormant", carrier=0,
                  speed=None, duplex=None, devtype="wlan", ifindex=3, stats=traffic(1_022, 9_804)),
            Iface("docker0", "devices/virtual/net/docker0", None, "02:42:ab:11:c0:07", speed=None, duplex=None,
                  ifindex=4, bridge=True, devtype="bridge", stats=traffic(4_201, 18_334)),
            Iface("veth3f2a1b0", "devices/virtual/net/veth3f2a1b0", None, "6e:1c:83:20:aa:19", speed=10000,
                  ifindex=5, stats=traffic(18_334, 4_201)),
            _modem_wwan(wwan_usb, 6),
        ],
        disks=[
            Disk("nvme0n1", nvme, 259, 0, 476 * GiB_SECTORS, io_stat(2_004_118, 5_102_774, discards=310,
                                                                      flushes=140_221),
                 logical_block_size=4096,
                 partitions=[("nvme0n1p1", 1, 1_048_576, io_stat(600, 2)),
                             ("nvme0n1p2", 2, 476 * GiB_SECTORS - 1_050_624, io_stat(2_003_500, 5_102_770))]),
            Disk("sda", sata, 8, 0, 931 * GiB_SECTORS, io_stat(40_771, 811, in_flight=0), rotational=1,
                 partitions=[("sda1", 1, 931 * GiB_SECTORS - 2048, io_stat(40_700, 811))]),
            _loop(0), _loop(1), _loop(2),
        ],
        mounts=[(22, 1, "259:2", "/", "rw,relatime", "ext4", "/dev/nvme0n1p2"),
                (23, 22, "0:21", "/proc", "rw,nosuid,nodev,noexec,relatime", "proc", "proc"),
                (24, 22, "0:22", "/sys", "rw,nosuid,nodev,noexec,relatime", "sysfs", "sysfs"),
                (25, 22, "259:1", "/boot/efi", "rw,relatime", "vfat", "/dev/nvme0n1p1"),
                (26, 22, "8:1", "/srv/recordings", "rw,relatime", "ext4", "/dev/sda1"),
                (27, 22, "0:30", "/var/lib/docker/overlay2/6c1f/merged", "rw,relatime", "overlay", "overlay"),
                (28, 22, "7:1", "/snap/core22/1380", "ro,nodev,relatime", "squashfs", "/dev/loop1"),
                (29, 22, "0:25", "/mnt/usb", "rw,relatime", "vfat", "/dev/sdb1")],
        mem_total_kb=15_987_004, swap_kb=2_097_148, x86_throttle=True, load=(0.21, 0.35, 0.30),
    )


BOARDS = {"rk3588-orangepi5plus": orangepi5plus, "rk3588-rock5b": rock5b, "jetson-nano": jetson_nano,
          "generic": generic}
