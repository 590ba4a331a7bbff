from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.workorders import Kind, State
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_ticketing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RoutingRule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('category', fields.CharField(null=True, max_length=16)),
                ('kind', fields.CharField(null=True, max_length=16)),
                ('hall', fields.CharField(null=True, max_length=16)),
                ('starts', fields.CharField(null=True, max_length=5)),
                ('ends', fields.CharField(null=True, max_length=5)),
                ('team', fields.CharField(max_length=16)),
            ],
            options={'table': 'routing_rule', 'app': 'models', 'pk_attr': 'id', 'table_description': 'category × hall × time of day → team. The most specific matching rule wins.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Shift',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='shifts', on_delete=OnDelete.CASCADE)),
                ('team', fields.CharField(max_length=16)),
                ('starts_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'shift', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One stretch of duty: who, on which team, from when to when.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SlaPolicy',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('kind', fields.CharField(max_length=16)),
                ('severity', fields.CharField(max_length=2)),
                ('ack_minutes', fields.IntField()),
                ('resolve_minutes', fields.IntField()),
                ('business_hours', fields.BooleanField(default=True)),
            ],
            options={'table': 'sla_policy', 'app': 'models', 'unique_together': (('cinema_id', 'kind', 'severity'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WorkOrder',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ref', fields.CharField(unique=True, max_length=12)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('kind', fields.CharEnumField(description='FAULT: fault\nCOMPLAINT: complaint\nTASK: task\nLOST_FOUND: lost_found\nGROUP_BOOKING: group_booking\nALERT: alert', enum_type=Kind, max_length=16)),
                ('category', fields.CharField(default='other', max_length=16)),
                ('severity', fields.CharField(default='P3', max_length=2)),
                ('source', fields.CharField(max_length=16)),
                ('source_key', fields.CharField(null=True, unique=True, max_length=128)),
                ('hall', fields.CharField(null=True, max_length=16)),
                ('seat', fields.CharField(null=True, max_length=8)),
                ('touchpoint', fields.CharField(null=True, max_length=64)),
                ('summary', fields.CharField(max_length=120)),
                ('description', fields.TextField(default='', unique=False)),
                ('photos', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('reporter', fields.CharField(max_length=64)),
                ('reporter_role', fields.CharField(max_length=16)),
                ('reporter_name', fields.CharField(default='', max_length=32)),
                ('team', fields.CharField(default='floor', max_length=16)),
                ('assignee', fields.CharField(null=True, db_index=True, max_length=64)),
                ('watchers', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('state', fields.CharEnumField(default=State.OPEN, description='OPEN: open\nASSIGNED: assigned\nACKNOWLEDGED: acknowledged\nIN_PROGRESS: in_progress\nPAUSED: paused\nESCALATED: escalated\nRESOLVED: resolved\nCLOSED: closed\nREOPENED: reopened', enum_type=State, max_length=16)),
                ('cause', fields.CharField(default='', max_length=200)),
                ('action', fields.CharField(default='', max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('version', fields.IntField(default=0)),
            ],
            options={'table': 'work_order', 'app': 'models', 'indexes': [Index(fields=['cinema_id', 'state'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WorkOrderEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('work_order', fields.ForeignKeyField('models.WorkOrder', source_field='work_order_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=64)),
                ('action', fields.CharField(max_length=24)),
                ('from_state', fields.CharField(null=True, max_length=16)),
                ('to_state', fields.CharField(null=True, max_length=16)),
                ('detail', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('message_key', fields.CharField(null=True, max_length=128)),
                ('internal', fields.BooleanField(default=False)),
            ],
            options={'table': 'work_order_event', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The append-only timeline: nothing here is ever updated or deleted.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='OutboundMessage',
            name='response',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
