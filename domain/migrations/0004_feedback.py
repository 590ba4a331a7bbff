from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.feedback import FollowUp
from domain.touchpoints import TouchpointKind
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_workorders')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Coupon',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=12)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('value_fen', fields.IntField()),
                ('reason', fields.CharField(default='', max_length=64)),
                ('response_id', fields.IntField(null=True)),
                ('work_order_id', fields.IntField(null=True)),
                ('issued_by', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('redeemed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'coupon', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A compensation coupon a manager sends with a reply: the code is shown at the box office.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FeedbackInvite',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(max_length=64)),
                ('visit_day', fields.DateField()),
                ('cinema_id', fields.IntField()),
                ('showtime_id', fields.IntField()),
                ('how', fields.CharField(max_length=12)),
                ('reason', fields.CharField(default='', max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'feedback_invite', 'app': 'models', 'unique_together': (('openid', 'visit_day'),), 'pk_attr': 'id', 'table_description': 'One survey invitation per visitor per visit, pushed after a show (or skipped, and why).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MessageConsent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(max_length=64)),
                ('template_id', fields.CharField(max_length=64)),
                ('remaining', fields.IntField(default=0)),
                ('granted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'message_consent', 'app': 'models', 'unique_together': (('openid', 'template_id'),), 'pk_attr': 'id', 'table_description': 'Subscription-message consent: each accepted one-time subscription allows one send.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Touchpoint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('code', fields.CharField(unique=True, max_length=40)),
                ('name', fields.CharField(max_length=32)),
                ('kind', fields.CharEnumField(description='HALL_EXIT: hall_exit\nRESTROOM: restroom\nTICKET_MACHINE: ticket_machine\nCONCESSION: concession\nETICKET: eticket\nPUSH: push\nCHAT: chat', enum_type=TouchpointKind, max_length=16)),
                ('hall', fields.CharField(null=True, max_length=16)),
                ('position', fields.IntField(default=0)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'touchpoint', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FeedbackResponse',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField(db_index=True)),
                ('touchpoint', fields.ForeignKeyField('models.Touchpoint', source_field='touchpoint_id', db_constraint=True, to_field='id', related_name='responses', on_delete=OnDelete.RESTRICT)),
                ('visitor', fields.CharField(db_index=True, max_length=64)),
                ('visit_day', fields.DateField(db_index=True)),
                ('channel', fields.CharField(max_length=8)),
                ('showtime_id', fields.IntField(null=True)),
                ('film_id', fields.IntField(null=True)),
                ('film_title', fields.CharField(null=True, max_length=64)),
                ('hall', fields.CharField(null=True, max_length=16)),
                ('show_starts_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('stars', fields.SmallIntField(null=True)),
                ('nps', fields.SmallIntField(null=True)),
                ('aspects', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('comment', fields.TextField(default='', unique=False)),
                ('phone', fields.CharField(null=True, max_length=20)),
                ('category', fields.CharField(null=True, max_length=16)),
                ('sentiment', fields.CharField(null=True, max_length=3)),
                ('priority', fields.CharField(default='P3', max_length=2)),
                ('work_order_id', fields.IntField(null=True, unique=True)),
                ('follow_up', fields.CharEnumField(default=FollowUp.NONE, description='NONE: none\nASKED: asked\nRESOLVED: resolved\nUNRESOLVED: unresolved', enum_type=FollowUp, max_length=12)),
                ('follow_up_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('edits', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'feedback_response', 'app': 'models', 'unique_together': (('visitor', 'visit_day', 'touchpoint'),), 'pk_attr': 'id', 'table_description': 'The answers of one visitor at one touchpoint on one visit.'},
            bases=['Model'],
        ),
    ]
